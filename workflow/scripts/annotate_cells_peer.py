"""Rule annotate_cells_peer: scvi-tools' CellAssign with its defaults on the same data
and markers (paper Supp. Fig. 6), in its own environment
(``scprob.bench.cellassign.run_scvi_tools``). Writes the probabilities and the timing;
the peer's own output goes to the log."""

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from workflow_helpers import logged_to, write_csv, write_json

from scprob.bench.cellassign import run_scvi_tools


def main(peer: str, data_path: str, markers_path: str, design_key: str | None,
         settings: dict[str, Any], seed: int, threads: int, probabilities_path: str,
         timing_path: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"cellassign_{peer}_") as scratch:
        work_dir = Path(scratch)
        # The peer reads the markers with their genes as the index.
        markers = work_dir / "markers.csv"
        pd.read_csv(markers_path, index_col="gene").to_csv(markers)
        probabilities, timing = run_scvi_tools(
            settings["python"][peer], settings["script"], data_path, str(markers),
            design_key, seed, threads, work_dir, settings["timeout_s"])
    write_csv(probabilities.rename_axis("cell").reset_index(), probabilities_path)
    write_json(timing, timing_path)


with logged_to(snakemake.log[0]):
    main(
        peer=snakemake.wildcards.peer,
        data_path=snakemake.input.data,
        markers_path=snakemake.input.markers,
        design_key=snakemake.params.design_key,
        settings=dict(snakemake.params.settings),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        probabilities_path=snakemake.output.probabilities,
        timing_path=snakemake.output.timing,
    )
