"""The numbers behind the verdicts: per post, per kind and overall (a JSON-ready dict)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orthoscope.errors import OrthoscopeError
from orthoscope.verdicts import thresholds as T
from orthoscope.verdicts.stats import bh_reject, bootstrap_median_ci, holm, permutation_p
from orthoscope.verdicts.text import group_sentence, post_sentences

SCALING = ("a_geo", "disp", "fit_resid")
SCALING_NULL = {"a_geo": "a_geo_null", "disp": "disp_null", "fit_resid": "fit_resid_null"}
"""Columns of the Gaussian null's scaling, used where a run has them."""
CONTROL_NAME = "control"
"""The post a run is contrasted with when no `control=` is given."""


def compute_verdicts(table: pd.DataFrame, control: str | None = None, metrics: str | None = None) -> dict:
    """Per post, per kind and overall verdicts with the numbers they rest on.

    Matrices count when `changed` and not `at_noise_floor` (a run without those columns counts
    every row). `control` names the post every other post is contrasted with (default: a post
    named `control`, if any); naming a post that is not in the table is an error. `metrics` names
    the run's metric set as the user chose it (`quick`, `a_geo,sym_frac`): a verdict its columns
    cannot give says which option to rerun with.

    Benjamini-Hochberg runs once per post over its usable matrices (one family); each kind counts
    the post's discoveries among its matrices, so the kinds' counts add up to the post's. The
    control contrasts are Holm-adjusted across the run: the post-level ones (the verdicts rest on
    them) as one family, the per-kind ones as another.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(8, 1, 12)
    >>> table = pd.DataFrame({"post": "mine", "name": [f"m{i}" for i in range(12)], "kind": "q",
    ...                       "a_geo": 1.02, "disp": 0.01, "fit_resid": 0.005, "sym_frac": 0.8,
    ...                       "sym_frac_null": 0.5, "sym_frac_pair_null": 0.55, "z_pair": z,
    ...                       "p_pair": 1e-9, "p_gauss": 1e-9, "changed": True, "at_noise_floor": False})
    >>> verdicts = compute_verdicts(table)
    >>> verdicts["posts"]["mine"]["overall"]["rotation"]["verdict"]
    'consistent'
    >>> verdicts["posts"]["mine"]["sentences"]["scaling"][:21]
    'Scaling: near-uniform'
    """
    out: dict = {"thresholds": dict(T.THRESHOLDS), "control": None, "metrics": metrics, "notes": [], "posts": {},
                 "multiplicity": None, "training_runs_per_post": 1}
    if table is None or len(table) == 0 or "post" not in table:
        out["notes"].append("empty table: nothing to judge")
        return out
    table = table.copy()
    table["post"] = table["post"].astype(str)
    posts = list(dict.fromkeys(table["post"]))
    if control is not None and control not in posts:
        raise OrthoscopeError(f"--control {control!r}: no post of that name in this run (posts: {', '.join(posts)})")
    control = control if control is not None else (CONTROL_NAME if CONTROL_NAME in posts and len(posts) > 1 else None)
    out["control"] = control
    used = _usable(table, out["notes"])
    _discoveries(table)
    columns = _Columns(table)
    for post in posts:
        mine = (table["post"] == post).to_numpy()
        theirs = (table["post"] == control).to_numpy() if control and post != control else None
        entry = {"step": _step(table[mine]), "overall": _group(table, mine, used, theirs, control, columns),
                 "kinds": {}}
        kinds = table.loc[mine, "kind"].astype(str) if "kind" in table else pd.Series(dtype=str)
        for kind in dict.fromkeys(kinds):
            in_kind = (table["kind"].astype(str) == kind).to_numpy()
            entry["kinds"][kind] = _group(table, mine & in_kind, used, None if theirs is None else theirs & in_kind,
                                          control, columns)
        entry["sentences"] = None
        out["posts"][post] = entry
    out["multiplicity"] = _adjust(out["posts"])
    for entry in out["posts"].values():
        for kind, group in entry["kinds"].items():
            group["sentence"] = group_sentence(kind, group)
        entry["sentences"] = post_sentences(entry, metrics)
    return jsonable(out)


def _discoveries(table: pd.DataFrame) -> None:
    """Per row: rejected by BH over its post's family (`bh_family`) of p values (`_bh_pair`, `_bh_gauss`)."""
    for column in ("p_pair", "p_gauss"):
        flags = np.zeros(len(table), dtype=bool)
        if column in table:
            p = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
            family = bh_family(table, column)
            for post in dict.fromkeys(table["post"]):
                rows = np.flatnonzero((table["post"] == post).to_numpy() & family)
                flags[rows] = bh_reject(p[rows], T.Q_BH)
        table[f"_bh_{column[2:]}"] = flags


def _adjust(posts: dict) -> dict:
    """Holm-adjusted p next to every raw contrast p; verdicts from the adjusted ones. Returns the families."""
    families = {"post": [], "kind": []}
    for entry in posts.values():
        families["post"].append(entry["overall"]["contrast"])
        families["kind"] += [g["contrast"] for g in entry["kinds"].values()]
    sizes = {}
    for family, contrasts in families.items():
        tests = [(c, column) for c in contrasts if c for column in ("z_pair", "sym_frac") if f"p_{column}" in c]
        adjusted = holm(np.array([c[f"p_{column}"] for c, column in tests]))
        for (c, column), value in zip(tests, adjusted):
            c[f"p_{column}_holm"] = float(value)
        for c in contrasts:
            if c and c.get("verdict") in ("more", "less", "same"):
                c["verdict"] = (("more" if c["z_pair_diff"] > 0 else "less")
                                if c["p_z_pair_holm"] < T.ALPHA_CONTRAST else "same")
        sizes[family] = len(tests)
    return {"method": "holm", "alpha": T.ALPHA_CONTRAST, "tests": sizes}


def usable(table: pd.DataFrame) -> np.ndarray:
    """The matrices the verdicts count: changed and not at the noise floor (a table without the columns counts
    every row; a run folder of an older orthoscope gets them from `pipeline/schema.upgrade`).

    >>> usable(pd.DataFrame({"changed": [True, True, False], "at_noise_floor": [False, True, False]})).tolist()
    [True, False, False]
    """
    return _changed(table) & ~_floor(table)


def bh_family(table: pd.DataFrame, column: str) -> np.ndarray:
    """The rows in Benjamini-Hochberg's family for the p values in `column` (taken per post): the usable
    matrices (`usable`) with a finite p. The verdicts' BH counts and p_pair's cap note both count these.

    >>> t = pd.DataFrame({"p_pair": [0.01, 0.2, float("nan")], "changed": True,
    ...                   "at_noise_floor": [False, True, False]})
    >>> bh_family(t, "p_pair").tolist()
    [True, False, False]
    """
    if column not in table:
        return np.zeros(len(table), dtype=bool)
    p = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    return usable(table) & np.isfinite(p)


def _changed(table: pd.DataFrame) -> np.ndarray:
    if "changed" not in table:
        return np.ones(len(table), dtype=bool)
    return table["changed"].fillna(True).astype(bool).to_numpy()


def _floor(table: pd.DataFrame) -> np.ndarray:
    if "at_noise_floor" not in table:
        return np.zeros(len(table), dtype=bool)
    return table["at_noise_floor"].fillna(False).astype(bool).to_numpy()


def _usable(table: pd.DataFrame, notes: list[str]) -> np.ndarray:
    """`usable`, with the flags the groups count (`_changed`, `_floor`) set on `table` and a note where the table
    has no `changed` column."""
    if "changed" not in table:
        notes.append("no `changed` column: every matrix counted as changed")
    changed = _changed(table)
    table["_changed"], table["_floor"] = changed, changed & _floor(table)
    return usable(table)


def _step(frame: pd.DataFrame) -> int | None:
    if "step" not in frame:
        return None
    steps = pd.to_numeric(frame["step"], errors="coerce").dropna()
    return int(steps.iloc[0]) if len(steps) else None


class _Columns:
    """The table's columns as float arrays (NaN where not a number), each converted once for every group."""

    def __init__(self, table: pd.DataFrame):
        self.table, self._arrays = table, {}

    def values(self, column: str, rows: np.ndarray) -> np.ndarray:
        """The finite values of `column` in `rows` (a boolean mask), in table order."""
        if column not in self.table:
            return np.empty(0)
        if column not in self._arrays:
            self._arrays[column] = pd.to_numeric(self.table[column], errors="coerce").to_numpy(dtype=float)
        values = self._arrays[column][rows]
        return values[np.isfinite(values)]

    def median(self, column: str, rows: np.ndarray) -> float | None:
        values = self.values(column, rows)
        return float(np.median(values)) if values.size else None

    def count(self, flag: str, rows: np.ndarray) -> int:
        return int(self.table[flag].to_numpy()[rows].sum()) if flag in self.table else 0


def _group(table: pd.DataFrame, rows: np.ndarray, used: np.ndarray, control_rows: np.ndarray | None,
           control: str | None, columns: _Columns) -> dict:
    mine = rows & used
    group = {"n": int(rows.sum()), "n_changed": int(table["_changed"].to_numpy()[rows].sum()),
             "n_noise_floor": int(table["_floor"].to_numpy()[rows].sum()), "n_used": int(mine.sum())}
    group["scaling"] = _scaling(columns, mine)
    group["rotation"] = _rotation(columns, mine, group)
    group["contrast"] = (None if control_rows is None
                         else _contrast(table[mine], table[control_rows & used], control))
    return group


def _scaling(columns: _Columns, rows: np.ndarray) -> dict:
    result = {"n": int(columns.values("a_geo", rows).size), **{c: columns.median(c, rows) for c in SCALING},
              "rel_delta": columns.median("rel_delta", rows)}
    nulls = {c: columns.median(column, rows) for c, column in SCALING_NULL.items()}
    result["null"] = ({"n": int(columns.values(SCALING_NULL["disp"], rows).size), **nulls}
                      if any(v is not None for v in nulls.values()) else None)
    if result["disp"] is None or result["fit_resid"] is None:
        result["verdict"] = "unavailable"
    elif result["n"] < T.MIN_MATRICES:
        result["verdict"] = "insufficient"
    elif result["disp"] < T.DISP_UNIFORM and result["fit_resid"] < T.FIT_RESID_UNIFORM:
        result["verdict"] = "uniform"
    else:
        result["verdict"] = "non-uniform"
    return result


def _rotation(columns: _Columns, rows: np.ndarray, group: dict) -> dict:
    z = columns.values("z_pair", rows)
    p_pair, p_gauss = columns.values("p_pair", rows), columns.values("p_gauss", rows)
    result = {"n": int(z.size), "z_pair": float(np.median(z)) if z.size else None, "z_pair_ci": None,
              **{c: columns.median(c, rows) for c in ("sym_frac", "sym_frac_pair_null", "sym_frac_null", "z_gauss",
                                                      "sym_frac_top", "z_pair_top")},
              "n_p_pair": int(p_pair.size), "bh_pair": columns.count("_bh_pair", rows) if p_pair.size else None,
              "n_p_gauss": int(p_gauss.size), "bh_gauss": columns.count("_bh_gauss", rows) if p_gauss.size else None}
    result["share_bh_pair"] = result["bh_pair"] / p_pair.size if p_pair.size else None
    result["share_bh_gauss"] = result["bh_gauss"] / p_gauss.size if p_gauss.size else None
    if z.size:
        result["z_pair_ci"] = list(bootstrap_median_ci(z, np.random.default_rng(T.SEED), T.BOOTSTRAP_RESAMPLES))
    result["verdict"] = _rotation_verdict(result, group)
    return result


def _rotation_verdict(r: dict, group: dict) -> str:
    if group["n_used"] == 0:
        return "unchanged"
    if r["n"] == 0 or r["bh_pair"] is None:
        return "unavailable"
    if r["n"] < T.MIN_MATRICES:
        return "insufficient"
    if r["share_bh_pair"] >= T.CONSISTENT_SHARE and r["bh_pair"] >= T.MIN_SIGNIFICANT:
        return "consistent" if r["z_pair_ci"][0] > T.Z_CI_LOW else "weak"
    if r["bh_pair"] >= T.MIN_SIGNIFICANT:
        return "partial"
    if r["share_bh_gauss"] is not None and r["share_bh_gauss"] >= T.PARTIAL_SHARE \
            and r["bh_gauss"] >= T.MIN_SIGNIFICANT:
        return "shape-only"
    return "none"


def _contrast(frame: pd.DataFrame, control_frame: pd.DataFrame, control: str) -> dict:
    """Post against the control: medians, their difference, a permutation p (paired by matrix name)."""
    result: dict = {"control": control, "paired": False, "n": 0, "n_control": 0}
    keep = ["name", "z_pair", "sym_frac"]
    if "z_pair" not in frame or "name" not in frame:
        result["verdict"] = "unavailable"
        return result
    mine = frame[[c for c in keep if c in frame]].dropna(subset=["z_pair"])
    theirs = control_frame[[c for c in keep if c in control_frame]].dropna(subset=["z_pair"])
    unique = mine["name"].is_unique and theirs["name"].is_unique
    both = mine.merge(theirs, on="name", suffixes=("", "_control")) if unique else mine.iloc[:0]
    paired = len(both) >= T.MIN_MATRICES
    if paired:
        result.update(paired=True, n=int(len(both)), n_control=int(len(both)))
        a = {c: both[c].to_numpy(float) for c in ("z_pair", "sym_frac") if c in both}
        b = {c: both[f"{c}_control"].to_numpy(float) for c in ("z_pair", "sym_frac") if f"{c}_control" in both}
    else:
        result.update(n=int(len(mine)), n_control=int(len(theirs)))
        a = {c: mine[c].to_numpy(float) for c in ("z_pair", "sym_frac") if c in mine}
        b = {c: theirs[c].to_numpy(float) for c in ("z_pair", "sym_frac") if c in theirs}
    if min(result["n"], result["n_control"]) < T.MIN_MATRICES:
        result["verdict"] = "insufficient"
        return result
    enough = T.MIN_CONTRAST if paired else T.MIN_MATRICES
    for column in ("z_pair", "sym_frac"):
        if column not in a or column not in b:
            continue
        x, y = a[column], b[column]
        ok_x, ok_y = np.isfinite(x), np.isfinite(y)
        if paired:
            ok_x = ok_y = ok_x & ok_y
        if min(ok_x.sum(), ok_y.sum()) < T.MIN_MATRICES:
            continue
        x, y = x[ok_x], y[ok_y]
        result[column] = float(np.median(x))
        result[f"{column}_control"] = float(np.median(y))
        # the effect the test is about: the median paired difference (paired), else the difference of medians
        result[f"{column}_diff"] = float(np.median(x - y)) if paired else result[column] - result[f"{column}_control"]
        result[f"p_{column}"] = permutation_p(x, y, paired=paired, rng=np.random.default_rng(T.SEED),
                                              permutations=T.PERMUTATIONS)
    if "p_z_pair" not in result or min(result["n"], result["n_control"]) < enough:
        result["verdict"] = "insufficient"
    elif result["p_z_pair"] < T.ALPHA_CONTRAST:
        result["verdict"] = "more" if result["z_pair_diff"] > 0 else "less"
    else:
        result["verdict"] = "same"
    return result


def jsonable(value):
    """NaN/inf -> None and numpy scalars -> Python, recursively (summary.json stays strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
