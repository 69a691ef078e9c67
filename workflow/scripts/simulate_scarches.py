"""Rule simulate_scarches: the offline stand-in for the CITE-seq reference (Hao et al.,
24 batches of donor × time point, a ~200-protein panel with five batches' proteins partly
masked) and the COVID-19 query (Su et al., new donors, healthy / moderate / severe, a
35-protein panel) of paper Fig. 3. Both are drawn from one generative world, so the
query's true cell types are known and are held out from every model.

Writes two h5ad files of raw counts: ``X`` and ``layers["counts"]`` ``(n_cells, n_genes)``
CSR, ``obsm["protein_expression"]`` a DataFrame ``(n_cells, n_proteins)``.
"""

import logging
from typing import Any

from workflow_helpers import atomic_output, logged_to

from scprob.data.simulate.cite_seq import simulate_cite_seq_query, simulate_cite_seq_reference

log = logging.getLogger(snakemake.rule)


def main(reference_settings: dict[str, Any], query_settings: dict[str, Any], seed: int,
         outputs: Any) -> None:
    # The world (the cell types' programs) comes from the seed; the query's cells are
    # drawn from another stream of the same seed, so the two datasets are independent.
    reference = simulate_cite_seq_reference(seed=seed, world_seed=seed, **reference_settings)
    query = simulate_cite_seq_query(reference, seed=seed + 1, **query_settings)
    for name, adata in (("reference", reference), ("query", query)):
        log.info(
            "%s: %d cells x %d genes, %d proteins, %d batches; cell types: %s",
            name, adata.n_obs, adata.n_vars, adata.obsm["protein_expression"].shape[1],
            adata.obs["batch"].nunique(), dict(adata.obs["cell_type"].value_counts()),
        )
    log.info("reference batches with masked proteins: %s",
             {b: len(p) for b, p in reference.uns["protein_masked_proteins"].items()})
    log.info("query donors by condition: %s",
             query.obs.groupby("condition", observed=True)["donor"].unique().to_dict())
    for adata, path in ((reference, outputs.reference), (query, outputs.query)):
        with atomic_output(path) as partial:
            adata.write_h5ad(partial)


with logged_to(snakemake.log[0]):
    main(
        reference_settings=dict(snakemake.params.reference),
        query_settings=dict(snakemake.params.query),
        seed=snakemake.params.seed,
        outputs=snakemake.output,
    )
