"""Parquet datasets: one directory per table, one part file per job or trial, in a Folder (a local
directory or a URI).

A part is written whole under a temporary name and then moved (Folder.write_bytes), so a
killed job never leaves half a file, and writing a part of the same name again replaces it:
re-running a job or a trial never duplicates its rows. `pandas.read_parquet(FOLDER/TABLE)` reads
every part of a table.
"""

from __future__ import annotations

import io

from rpgan.errors import UserError
from rpgan.io.run import Folder

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_part(folder: Folder, table: str, part: str, schema: pa.Schema, rows: list[dict]) -> str:
    """Write rows (dicts with the schema's columns) as FOLDER/TABLE/part-PART.parquet; returns its
    path or URI."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    name = f"{table}/part-{part}.parquet"
    folder.write_bytes(name, buffer.getvalue())
    return f"{folder.uri}/{name}"


def read_parts(folder: Folder, table: str, schema: pa.Schema, remedy: str) -> pd.DataFrame:
    """Every part of FOLDER/TABLE, conformed to `schema` (an empty frame of its columns if there
    are none); columns a part lacks (an older rpgan's) read as nulls. A part that is not Parquet,
    is truncated or has columns of other types is a one-line UserError naming it and `remedy`
    (which may use {name}, the part's file name)."""
    parts = [_read_part(folder, table, name, schema, remedy) for name in folder.files(table)
             if name.endswith(".parquet")]
    return (pa.concat_tables(parts) if parts else schema.empty_table()).to_pandas()


def _read_part(folder: Folder, table: str, name: str, schema: pa.Schema, remedy: str) -> pa.Table:
    data = folder.read_bytes(f"{table}/{name}")
    try:
        part = pq.read_table(io.BytesIO(data or b""))
        columns = [part.column(f.name).cast(f.type) if f.name in part.column_names else pa.nulls(len(part), f.type)
                   for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowException, OSError, ValueError, KeyError) as e:  # ArrowInvalid: not Parquet, truncated ...
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"{folder.uri}/{table}/{name} is unreadable ({detail}); {remedy.format(name=name)}") from None
