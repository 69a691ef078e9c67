"""scArches surgery on a module: grow the covariate tables by the query's categories and
freeze everything else.

scArches (Lotfollahi et al. 2021) maps a query into a trained reference network without
retraining it. The network reads each categorical covariate as a one-hot input, here an
embedding table of a ``CovariateLinear``; a query's new category is a new row of the table
of *its own* covariate, in every layer that reads it. Only those rows train: every
reference weight gets ``requires_grad=False`` (so no optimizer moment or weight decay
touches it) and batch norms keep the reference's running statistics, so reference cells
map bit for bit as before.

Table ``k`` of a layer belongs to the ``k``-th categorical column (the batch first); a layer
may read a prefix of the columns. Counts of rows are given per column: ``n_reference[k]``
rows owned by the reference, ``n_total[k]`` in all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from scprob.nn.layers import CovariateLinear


def covariate_layers(module: nn.Module) -> list[tuple[str, CovariateLinear]]:
    """Every ``CovariateLinear`` in ``module`` with its qualified name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, CovariateLinear)]


def _columns_of(name: str, layer: CovariateLinear, n_rows: Sequence[int]) -> Sequence[int]:
    if len(layer.category_tables) > len(n_rows):
        raise ValueError(
            f"layer {name!r} has {len(layer.category_tables)} category tables but the data "
            f"have only {len(n_rows)} categorical columns: the module and the registry "
            "belong to different models."
        )
    return n_rows[: len(layer.category_tables)]


def shape_covariate_tables(
    module: nn.Module, n_reference: Sequence[int], n_total: Sequence[int]
) -> None:
    """Give table ``k`` of every layer ``n_reference[k]`` reference rows and
    ``n_total[k] − n_reference[k]`` query rows, uninitialised (a state dict fills them)."""
    for name, layer in covariate_layers(module):
        n_old = _columns_of(name, layer, n_reference)
        for k, n_all in enumerate(_columns_of(name, layer, n_total)):
            for tables, n_rows in ((layer.category_tables, n_old[k]),
                                   (layer.new_category_tables, n_all - n_old[k])):
                if tables[k].shape[0] != n_rows:
                    tables[k] = nn.Parameter(tables[k].new_empty(n_rows, layer.n_out))


def consolidated_state(module: nn.Module) -> dict[str, Tensor]:
    """A copy of ``module``'s state with each table's query rows merged into its reference
    rows: a query model becomes the reference of the next surgery."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for name, layer in covariate_layers(module):
        prefix = f"{name}." if name else ""
        for k in range(len(layer.category_tables)):
            old, new = f"{prefix}category_tables.{k}", f"{prefix}new_category_tables.{k}"
            state[old] = torch.cat([state[old], state[new]])
            state[new] = state[new][:0]
    return state


def _check_no_other_category_axis(module: nn.Module, reference_state: Mapping[str, Tensor]
                                  ) -> None:
    """Only CovariateLinear tables can grow. A parameter that changes shape with the number
    of categories anywhere else (a per-batch dispersion stored as one matrix) would have to
    train as a whole, reference part included."""
    for key, value in module.state_dict().items():
        if "category_tables." in key or key not in reference_state:
            continue
        if value.shape != reference_state[key].shape:
            raise ValueError(
                f"parameter {key!r} depends on the number of categories "
                f"({tuple(reference_state[key].shape)} in the reference, "
                f"{tuple(value.shape)} with the query's categories) but is not a "
                "CovariateLinear table, so surgery cannot train its query part alone. "
                "Use a reference model without it (for SCVI: dispersion='gene')."
            )


class FrozenBatchNorm1d(nn.BatchNorm1d):
    """Batch norm that stays in evaluation mode: it normalises with the reference's running
    statistics and never updates them, whatever ``train()`` the trainer calls."""

    @classmethod
    def from_batch_norm(cls, norm: nn.BatchNorm1d) -> FrozenBatchNorm1d:
        frozen = cls(norm.num_features, eps=norm.eps, momentum=norm.momentum,
                     affine=norm.affine, track_running_stats=norm.track_running_stats)
        frozen.load_state_dict(norm.state_dict())
        frozen.to(next(iter(norm.state_dict().values())).device)
        frozen.requires_grad_(False)
        return frozen.train(False)

    def train(self, mode: bool = True) -> FrozenBatchNorm1d:
        return super().train(False)


def freeze_reference(module: nn.Module) -> None:
    """Only the appended category rows stay trainable; batch norms are locked in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for _, layer in covariate_layers(module):
        for table in layer.new_category_tables:
            table.requires_grad_(table.shape[0] > 0)
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm1d) and not isinstance(child, FrozenBatchNorm1d):
                setattr(parent, child_name, FrozenBatchNorm1d.from_batch_norm(child))


def n_trainable_parameters(module: nn.Module) -> int:
    """Number of scalars the optimizer will update."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def graft_reference(
    query_module: nn.Module,
    reference_module: nn.Module,
    n_reference: Sequence[int],
    n_total: Sequence[int],
) -> None:
    """Load ``reference_module``'s weights (its own query rows merged in) into the freshly
    built ``query_module``, append ``n_total[k] − n_reference[k]`` trainable rows to table
    ``k`` of every layer, each starting at the mean of the reference rows, and freeze the
    rest."""
    reference_state = consolidated_state(reference_module)
    shape_covariate_tables(query_module, n_reference, n_reference)
    _check_no_other_category_axis(query_module, reference_state)
    query_module.load_state_dict(reference_state)
    for name, layer in covariate_layers(query_module):
        columns = zip(_columns_of(name, layer, n_total), n_reference, strict=False)
        layer.add_categories([n_all - n_old for n_all, n_old in columns])
    freeze_reference(query_module)
    query_module.eval()


def restore_query_module(
    module: nn.Module, n_reference: Sequence[int], n_total: Sequence[int]
) -> None:
    """Shape and freeze a freshly built module as a saved query model's, so that its state
    dict loads (nothing to do for a reference model, ``n_total == n_reference``)."""
    if list(n_total) == list(n_reference):
        return
    shape_covariate_tables(module, n_reference, n_total)
    freeze_reference(module)
