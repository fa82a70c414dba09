-- Per-server settings (the bot's /config), stored as JSON over the declared defaults, and the players who
-- opted out of training: their votes and ratings are never exported.
CREATE TABLE server_settings (
    server     TEXT PRIMARY KEY,
    settings   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE opt_outs (
    player TEXT PRIMARY KEY,
    at     TEXT NOT NULL
);
