"""Analysis of finished runs: sweeps, aggregates, figures, claims and the report. Reads the written
tables and records only; never imports the training runtime."""
