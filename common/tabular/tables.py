"""The JumpStart tabular data contract of the LightGBM and CatBoost images (docs/data.md, "JumpStart tabular data").

Used by the lightgbm and catboost images (their requirements bring pyarrow).

Layout: a `train` or `training` channel of header-less CSV files (target first), read non-recursively
(`*.csv`, or gzip `*.csv.gz`), optionally with `train/` (or `training/`) and `validation/` subfolders, an optional
`validation` channel, and optionally one `*.json` (`{"cat_index_list": [1, 3]}`, 1-based column
numbers, 0 is the target). Without validation data, 20 % of the rows are held out exactly as the
JumpStart script's `DataFrame.sample(frac=0.2, random_state=200)` picks them.

CSV is parsed with pyarrow (multi-threaded, typed per column,
empty cells become nulls -> NaN): numeric columns straight into float32, the dtype the serving CSV
reader gives, so training and serving see the same values. Categorical columns are read as text and
normalised: integral numbers become int64 codes; strings stay strings where the library allows them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.channels import maybe_gunzip
from common.data.batch import Batch, first_non_finite, non_finite_message
from common.data.text import is_number
from common.errors import UserError
from common.imports import without

log = logging.getLogger(__name__)

TRAIN_CHANNELS = ("train", "training")
HOLDOUT_FRACTION, HOLDOUT_SEED = 0.2, 200
INT32_MAX = 2147483647
CLASSIFICATION, REGRESSION, AUTO = "classification", "regression", "auto"
MAX_AUTO_CLASSES = 100


@dataclass
class Table:
    """Rows of one split: float32 features (n, d), float64 labels, categorical columns by feature index."""

    features: np.ndarray
    labels: np.ndarray
    categorical: tuple[int, ...] = ()
    categories: dict[int, np.ndarray] = field(default_factory=dict)  # feature index -> int64 or str values

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.features[rows], self.labels[rows], self.categorical,
                     {c: v[rows] for c, v in self.categories.items()})


@dataclass(frozen=True)
class Layout:
    train_files: list[Path]
    validation_files: list[Path]
    categorical_json: Path | None


def locate(data_dir: Path, channel_names: set[str]) -> Layout:
    """The CSV files of training and validation data and the categorical_index.json, per the guide's layouts."""
    present = [name for name in TRAIN_CHANNELS if name in channel_names]
    if len(present) == 2:
        raise UserError("Both 'train' and 'training' channel are identified; give only one of them.")
    if not present:
        raise UserError("Neither 'train' nor 'training' channel is identified; give one of them.")
    root = data_dir / present[0]
    inner = next((root / sub for sub in TRAIN_CHANNELS if (root / sub).is_dir()), None)
    train_dir = inner or root
    validation: list[Path] = []
    if inner is not None and (root / "validation").is_dir():
        validation = _csv_files(root / "validation", required=False)
    if "validation" in channel_names and not validation:
        validation = _csv_files(data_dir / "validation", required=True)
    jsons = sorted(p for d in {root, train_dir} for p in d.glob("*.json") if p.is_file())
    if len(jsons) > 1:
        raise UserError(f"Found {len(jsons)} JSON files in the '{present[0]}' channel "
                        f"({', '.join(p.name for p in jsons)}); give at most one categorical_index.json.")
    return Layout(_csv_files(train_dir, required=True), validation, jsons[0] if jsons else None)


def _csv_files(directory: Path, required: bool) -> list[Path]:
    found = [p for pattern in ("*.csv", "*.csv.gz") for p in directory.glob(pattern)] if directory.is_dir() else []
    files = sorted(p for p in found if p.is_file())
    if required and not files:
        raise UserError(f"Could not find any valid file ending in '.csv' or '.csv.gz' under '{directory}'.")
    return files


def open_text(path: Path) -> io.TextIOWrapper:
    """The file as text for the csv module, gunzipped when it is gzip; bytes that are not UTF-8 read as U+FFFD
    (the cell then fails as 'not a number' with its line and column, not as a decoding error)."""
    return io.TextIOWrapper(maybe_gunzip(open(path, "rb"), path.name), encoding="utf-8", errors="replace",
                            newline="")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def count_columns(path: Path) -> int:
    with open_text(path) as stream:
        for row in csv.reader(stream):
            if row:
                return len(row)
    raise UserError(f"{path.name} holds no rows.")


def categorical_columns(path: Path | None, n_columns: int) -> tuple[int, ...]:
    """0-based feature indices from categorical_index.json (which counts the target as column 0)."""
    if path is None:
        return ()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path.name} is not valid JSON: {exc}.") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f'{path.name} must hold an object like {{"cat_index_list": [1, 3]}}.')
    values = raw.get("cat_index_list", next(iter(raw.values())))
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UserError(f"{path.name}: cat_index_list must be a list of integers, got {values!r}.")
    if len(set(values)) != len(values):
        raise UserError(f"{path.name}: cat_index_list has repeated indices {values!r}.")
    bad = [v for v in values if not 0 < v < min(n_columns, INT32_MAX)]
    if bad:
        raise UserError(f"{path.name}: categorical indices must be column numbers 1..{n_columns - 1} "
                        f"(0 is the target); got {bad}.")
    return tuple(sorted(v - 1 for v in values))


def read_tables(files: list[Path], n_columns: int, categorical: tuple[int, ...], strings_ok: bool) -> Table:
    """All rows of `files`: target first, then features; categorical columns validated."""
    with without("pandas"):  # pyarrow would import it for to_numpy() when installed (common.imports)
        return _read_tables(files, n_columns, categorical, strings_ok)


def _read_tables(files: list[Path], n_columns: int, categorical: tuple[int, ...], strings_ok: bool) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(n_columns)]
    types = {name: pa.float32() for name in names}
    types["c0"] = pa.float64()
    if strings_ok:  # else categorical columns are numbers too, checked below (no text conversion)
        for index in categorical:
            types[names[index + 1]] = pa.string()
    read = pacsv.ReadOptions(column_names=names, block_size=4 << 20)
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    tables = []
    for path in files:
        try:
            source = pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None)
            tables.append(pacsv.read_csv(source, read_options=read, convert_options=convert))
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(diagnose(path, n_columns, categorical, strings_ok) or f"{path.name}: {exc}.") from None
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    labels = table.column(0).to_numpy()
    if not np.isfinite(labels).all():
        row = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise UserError(non_finite_message(f"Row {row + 1} of the training data, column 1 (the target)", labels[row])
                        if np.isinf(labels[row]) else f"Row {row + 1} of the training data has no target value in "
                        "column 1.")
    features = np.empty((table.num_rows, n_columns - 1), dtype=np.float32)
    categories: dict[int, np.ndarray] = {}
    for index in range(n_columns - 1):
        column = table.column(index + 1)
        if index in categorical and strings_ok:
            features[:, index], categories[index] = _categorical(column, index)
        else:
            features[:, index] = column.to_numpy()
        if index in categorical and not strings_ok:
            _check_codes(features[:, index], index)
    found = first_non_finite(features, missing_ok=True)
    if found is not None:
        row, column, value = found
        raise UserError(non_finite_message(f"Row {row + 1} of the training data, column {column + 2}", value))
    return Table(features, labels, categorical, categories)


def request_rows(body: bytes, n_features: int, categorical: tuple[int, ...]) -> np.ndarray:
    """A text/csv request read the way training data is (pyarrow; categorical columns as text, integral
    text normalised to int): an object array of floats and category values, for a model whose training
    categories were strings, which the shared numeric CSV reader cannot carry."""
    with without("pandas"):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = [f"c{i}" for i in range(n_features)]
        types = {name: pa.string() if i in categorical else pa.float32() for i, name in enumerate(names)}
        try:
            table = pacsv.read_csv(pa.BufferReader(body), read_options=pacsv.ReadOptions(column_names=names),
                                   convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            raise UserError(f"The request must be rows of {n_features} comma-separated values, numbers outside the "
                            f"categorical columns {[i + 1 for i in categorical]}: {str(exc).strip()}") from None
    rows = np.empty((table.num_rows, n_features), dtype=object)
    for i, name in enumerate(names):
        values = table.column(name).to_pylist()
        if i in categorical:
            if None in values:
                raise UserError(f"Row {values.index(None) + 1} of request, column {i + 1} is categorical and empty.")
            rows[:, i] = [word if number is None else number for word, number in ((w, _integral(w)) for w in values)]
        else:
            rows[:, i] = [np.nan if v is None else v for v in values]
            infinite = [r for r, v in enumerate(values) if v is not None and np.isinf(v)]
            if infinite:
                raise UserError(non_finite_message(f"Row {infinite[0] + 1} of request, column {i + 1}",
                                                   values[infinite[0]]))
    return rows


def _check_codes(values: np.ndarray, index: int) -> None:
    """Numeric categories (missing allowed) must be integers in 0..Int32.MaxValue-1."""
    bad = np.isfinite(values) & ((values != np.floor(values)) | (values < 0) | (values >= INT32_MAX))
    if bad.any():
        value = float(values[np.flatnonzero(bad)[0]])
        raise UserError(f"Categorical column {index + 2} holds {value:g}; categories must be integers in "
                        f"0..{INT32_MAX - 1}.")


def _categorical(column: object, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Float codes (NaN for text) and the int64 or str values of a text-typed categorical column."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).combine_chunks()
    words = encoded.dictionary.to_pylist()
    numbers = [_integral(w) for w in words]
    where = f"Categorical column {index + 2}"
    outside = [n for n in numbers if n is not None and not 0 <= n < INT32_MAX]
    if outside:
        raise UserError(f"{where} holds {outside[0]}; categories must be integers in 0..{INT32_MAX - 1}.")
    indices = encoded.indices.fill_null(len(numbers)).to_numpy(zero_copy_only=False)
    if (indices == len(numbers)).any():
        row = int(np.flatnonzero(indices == len(numbers))[0]) + 1
        raise UserError(f"{where} is empty in row {row} of the training data; categorical values must be "
                        "integers or strings.")
    codes = np.array([np.nan if n is None else n for n in numbers], dtype=np.float64)[indices]
    if all(n is not None for n in numbers):
        return codes, codes.astype(np.int64)
    text = np.array([w if n is None else str(n) for w, n in zip(words, numbers)], dtype=object)
    return codes, text[indices]


def _integral(word: str) -> int | None:
    try:
        number = float(word)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def diagnose(path: Path, n_columns: int, categorical: tuple[int, ...], strings_ok: bool) -> str | None:
    """The first line pyarrow refused, in words (slow path, only after a parse error)."""
    numeric = set(range(n_columns)) - ({i + 1 for i in categorical} if strings_ok else set())
    with open_text(path) as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row:
                continue
            if len(row) != n_columns:
                return (f"Line {number} of {path.name} has {len(row)} fields but earlier lines have {n_columns}; "
                        "every row needs the same columns.")
            for col, cell in enumerate(row):
                if col in numeric and cell.strip() and not is_number(cell) and col - 1 in categorical:
                    return (f"Categorical column {col + 1} holds '{cell[:60]}' (line {number} of {path.name}); "
                            "this algorithm needs categories encoded as non-negative integers.")
                if col in numeric and cell.strip() and not is_number(cell):
                    hint = " (a header row? CSV data must have no header, target first)" if number == 1 else ""
                    hint = " (it holds bytes that are not UTF-8)" if "\ufffd" in cell else hint
                    return f"Line {number} of {path.name}, column {col + 1}: '{cell[:60]}' is not a number{hint}."
    return None


def holdout(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) as pandas' `sample(frac=0.2, random_state=200)` and `drop` choose them."""
    size = round(HOLDOUT_FRACTION * n_rows)
    validation = np.random.RandomState(HOLDOUT_SEED).choice(n_rows, size=size, replace=False)
    keep = np.ones(n_rows, dtype=bool)
    keep[validation] = False
    return np.flatnonzero(keep), validation


def problem_of(labels: np.ndarray, override: str) -> tuple[str, int]:
    """(classification or regression, number of classes) from the labels, as the guide infers it.

    auto: classification when the labels are the integers 0..K-1 with 2 <= K <= 100, else regression.
    """
    values = np.unique(labels)
    integral = bool(np.all(values == np.floor(values)))
    if override == REGRESSION:
        return REGRESSION, 1
    if override == CLASSIFICATION or (integral and 2 <= len(values) <= MAX_AUTO_CLASSES
                                      and values[0] == 0 and values[-1] == len(values) - 1):
        if len(values) < 2:
            raise UserError(f"The training labels hold a single class ({values[0]!r}); classification needs "
                            "at least two (set problem_type=regression to fit a constant).")
        if not integral or values[0] != 0 or values[-1] != len(values) - 1:
            shown = ", ".join(repr(float(v)) for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise UserError(f"Classification labels must be the integers 0..K-1; got {len(values)} distinct "
                            f"values {shown}.")
        return CLASSIFICATION, len(values)
    if len(values) < 2 and override == AUTO:
        raise UserError(f"The training labels hold a single value ({float(values[0])!r}); give at least two "
                        "classes, or set problem_type=regression to fit a constant.")
    return REGRESSION, 1


@dataclass(frozen=True)
class TextCategoryCsvReader:
    """text/csv requests for a model whose training categories were strings (`request_rows`)."""

    num_features: int
    categorical: tuple[int, ...]

    def parse(self, body: bytes, source: str = "request") -> Batch:
        return Batch(request_rows(body, self.num_features, self.categorical), source=source)
