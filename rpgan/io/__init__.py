"""Where bytes go: data sets, PNG grids, URIs and folders, Parquet parts, atomic writes, progress."""
