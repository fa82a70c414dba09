-- What the engine's output checks found, per model version: answers checked, parse failures, repairs and
-- rejections by reason. Counts only grow; they feed evaluation and the live report.
CREATE TABLE output_counts (
    model_version TEXT NOT NULL,
    counter       TEXT NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (model_version, counter)
);
