"""Rule subsample_heart: one data set of the runtime study (paper Supp. Fig. 2, Methods):
``n_cells`` cells drawn without replacement from the atlas (simulated, or the real Heart
Cell Atlas with its 8 noise covariates added), restricted to their
``n_top_genes`` (4,000 in the paper) most variable genes by scanpy's
``highly_variable_genes(flavor="seurat_v3")`` on the raw counts.
"""

import logging

from workflow_helpers import logged_to, read_h5ad_input

from scprob.data.subsample import subsample_and_select_hvg

log = logging.getLogger(snakemake.rule)


def main(atlas_path: str, subsample_path: str, n_cells: int, n_top_genes: int,
         batch_key: str | None, noise_covariates: list[str], seed: int) -> None:
    # An unreadable atlas fails here, named, rather than deep in the subsampler.
    read_h5ad_input(atlas_path, backed=True).file.close()
    # The output is written atomically by subsample_and_select_hvg.
    subsample_and_select_hvg(atlas_path, subsample_path, n_cells, n_top_genes=n_top_genes,
                             seed=seed, batch_key=batch_key,
                             noise_covariates=noise_covariates)
    written = read_h5ad_input(subsample_path, backed=True)
    log.info("wrote %s: %d cells x %d genes", subsample_path, written.n_obs, written.n_vars)
    written.file.close()


with logged_to(snakemake.log[0]):
    main(
        atlas_path=snakemake.input.atlas,
        subsample_path=snakemake.output.data,
        n_cells=int(snakemake.wildcards.n_cells),
        n_top_genes=snakemake.params.n_top_genes,
        batch_key=snakemake.params.batch_key,
        noise_covariates=list(snakemake.params.noise_covariates),
        seed=snakemake.params.seed,
    )
