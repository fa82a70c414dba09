-- The names players chose for themselves in the browser (other players in a room see them). A player's
-- forget deletes theirs with the rest of their data.
CREATE TABLE nicknames (
    player   TEXT PRIMARY KEY,
    nickname TEXT NOT NULL,
    at       TEXT NOT NULL
);
