-- Games and what happened in them. games.state holds the whole versioned game state (engine.game.Game) as
-- JSON, which is what a resume reads; the other tables are the same facts in rows, for queries and the
-- feedback export. Every save rewrites one game's rows in one transaction.
CREATE TABLE games (
    id            TEXT PRIMARY KEY,
    place         TEXT NOT NULL,
    genre         TEXT NOT NULL,
    premise       TEXT NOT NULL,
    model_version TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('waiting', 'writing', 'ended')),
    scenes        INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    state         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX games_by_place ON games (place, status);

CREATE TABLE scenes (
    game_id       TEXT NOT NULL REFERENCES games (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    narration     TEXT NOT NULL,
    ending        TEXT,
    model_version TEXT NOT NULL,
    repaired      INTEGER NOT NULL,
    chosen        INTEGER,
    kind          TEXT NOT NULL CHECK (kind IN ('shown', 'rejected', 'undone')),
    shown_at      TEXT,
    PRIMARY KEY (game_id, position, kind, narration)
);

CREATE TABLE choices (
    game_id  TEXT NOT NULL REFERENCES games (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    text     TEXT NOT NULL,
    PRIMARY KEY (game_id, position, number)
);

CREATE TABLE branches (
    game_id       TEXT NOT NULL REFERENCES games (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    choice        INTEGER NOT NULL,
    narration     TEXT NOT NULL,
    ending        TEXT,
    model_version TEXT NOT NULL,
    taken         INTEGER NOT NULL,
    PRIMARY KEY (game_id, position, choice)
);

CREATE TABLE votes (
    game_id  TEXT NOT NULL REFERENCES games (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    player   TEXT NOT NULL,
    choice   INTEGER NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (game_id, position, player)
);

CREATE TABLE ratings (
    game_id       TEXT NOT NULL REFERENCES games (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    player        TEXT NOT NULL,
    stars         INTEGER,
    thumb         TEXT,
    comment       TEXT,
    model_version TEXT NOT NULL,
    at            TEXT NOT NULL
);
