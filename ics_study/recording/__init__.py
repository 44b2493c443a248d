"""Recording: what training returns, written as Parquet tables, TensorBoard events and JSON records."""
