-- Players whose data was deleted at their request (/privacy forget, `cyoa privacy forget`), and when. A save
-- never writes back what they did up to that moment (a running bot may still hold it in memory, or read a
-- reaction of theirs again after a restart), and a game they had started is never saved again. The id is
-- kept for that alone; what they do afterwards is theirs to keep out of training with the opt-out.
CREATE TABLE forgotten (
    player TEXT PRIMARY KEY,
    at     TEXT NOT NULL
);
