"""Covariate-injecting building blocks shared by every model.

The paper's Fig. 2b: the decoder receives the latent ``z`` *and* the observed covariates
``s`` (categorical and continuous), and the covariates are injected into **every** layer.
Here that includes the output heads: scvi-tools feeds continuous covariates only to the
first decoder layer (concatenated to ``z``) and its output heads see none, so a nuisance
effect that is specific to a gene must be routed through the shared hidden units. With
injection into the heads a covariate can shift each gene's log-mean directly.

A categorical covariate enters a layer as a one-hot block of its input. Multiplying a
one-hot vector by a weight matrix selects one row, so ``CovariateLinear`` stores each
categorical block as an embedding table ``(n_categories, n_out)`` and looks rows up: the
same function as concatenating one-hots, without building them. It also makes scArches
surgery exact: a new category is a new row, appended to the table of *its own* covariate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Categorical covariates with at most this many categories enter as a one-hot matrix
# product, larger ones as a row lookup (see CovariateLinear.forward).
ONE_HOT_MAX_CATEGORIES = 64


class CovariateLinear(nn.Module):
    """``W [h; onehot(c_1); …; onehot(c_K); s] + b`` for hidden input ``h`` ``(n, n_in)``,
    categorical codes ``c`` ``(n, K)`` and continuous covariates ``s`` ``(n, n_cont)``.

    Each categorical table may be split into a frozen part and a trainable part (rows
    appended by :meth:`add_categories`), so surgery never puts frozen weights in an
    optimizer.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_categories: Sequence[int] = (),
        n_continuous: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.n_continuous = n_continuous
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        # A one-hot input behaves like an input feature of the concatenated layer: draw its
        # weights from the same distribution that nn.Linear uses for the whole fan-in.
        bound = 1.0 / math.sqrt(n_in + sum(n_categories) + n_continuous)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        if bias:
            nn.init.uniform_(self.linear.bias, -bound, bound)
        self.category_tables = nn.ParameterList(
            [nn.Parameter(torch.empty(n, n_out).uniform_(-bound, bound)) for n in n_categories]
        )
        # Rows appended for query categories (scArches); empty until surgery.
        self.new_category_tables = nn.ParameterList(
            [nn.Parameter(torch.empty(0, n_out)) for _ in n_categories]
        )
        self.continuous_weight = (
            nn.Parameter(torch.empty(n_continuous, n_out).uniform_(-bound, bound))
            if n_continuous > 0
            else None
        )

    @property
    def n_categories(self) -> list[int]:
        return [
            old.shape[0] + new.shape[0]
            for old, new in zip(self.category_tables, self.new_category_tables, strict=True)
        ]

    def add_categories(self, n_new: Sequence[int]) -> None:
        """Append ``n_new[k]`` trainable rows to categorical table ``k``.

        A new category starts at the mean of the existing rows, an "average reference
        category", so an untrained query batch is decoded like a typical reference one.
        """
        for k, n in enumerate(n_new):
            if n == 0:
                continue
            start = self.table(k).detach().mean(dim=0, keepdim=True).expand(n, -1)
            grown = torch.cat([self.new_category_tables[k].data, start.clone()])
            self.new_category_tables[k] = nn.Parameter(grown)

    def table(self, k: int) -> Tensor:
        new = self.new_category_tables[k]
        if new.shape[0] == 0:
            return self.category_tables[k]
        return torch.cat([self.category_tables[k], new])

    def forward(
        self, h: Tensor, categorical: Tensor | None = None, continuous: Tensor | None = None
    ) -> Tensor:
        n_tables = len(self.category_tables)
        bias = self.linear.bias
        # Every one-hot row sums to 1, so the bias can ride on the first table's rows
        # (b + T[c] = (T + b)[c]): the output is then written once by the matrix product,
        # not first filled with the broadcast bias.
        out = F.linear(h, self.linear.weight, bias if n_tables == 0 else None)
        for k in range(n_tables):
            table = self.table(k)
            if k == 0 and bias is not None:
                table = table + bias
            if table.shape[0] <= ONE_HOT_MAX_CATEGORIES:
                # The row lookup written as the one-hot product it stands for: both
                # directions are then one small matrix product, where indexing would
                # scatter-add the gradient of every selected row (several times slower on
                # a CPU for a few categories; past ~64 the product costs more).
                one_hot = F.one_hot(categorical[:, k], table.shape[0]).to(out.dtype)
                out = out.addmm_(one_hot, table)
            else:
                out = out + table[categorical[:, k]]
        if self.continuous_weight is not None:
            out = out.addmm_(continuous, self.continuous_weight)
        return out


class FCLayers(nn.Module):
    """A stack of ``n_layers`` fully connected layers ``(n, n_in) → (n, n_hidden)``, each
    ``CovariateLinear → norm → ReLU → dropout``, with the covariates injected into every
    layer (``inject_covariates=True``) or into the first one only."""

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_layers: int = 1,
        n_categories: Sequence[int] = (),
        n_continuous: int = 0,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        inject_covariates: bool = True,
    ) -> None:
        super().__init__()
        if use_batch_norm and use_layer_norm:
            raise ValueError("use_batch_norm and use_layer_norm are exclusive: choose one.")
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(n_layers):
            covariates_here = i == 0 or inject_covariates
            self.layers.append(
                CovariateLinear(
                    n_in if i == 0 else n_hidden,
                    n_hidden,
                    n_categories if covariates_here else (),
                    n_continuous if covariates_here else 0,
                )
            )
            self.norms.append(_normalisation(n_hidden, use_batch_norm, use_layer_norm))
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()

    def forward(
        self, h: Tensor, categorical: Tensor | None = None, continuous: Tensor | None = None
    ) -> Tensor:
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = self.dropout(torch.relu(norm(layer(h, categorical, continuous))))
        return h


def _normalisation(n_hidden: int, use_batch_norm: bool, use_layer_norm: bool) -> nn.Module:
    if use_batch_norm:
        # Small momentum and eps as in scVI: minibatch statistics of sparse counts are
        # noisy, and running averages must not chase them.
        return nn.BatchNorm1d(n_hidden, momentum=0.01, eps=1e-3)
    if use_layer_norm:
        return nn.LayerNorm(n_hidden, elementwise_affine=False)
    return nn.Identity()


class Encoder(nn.Module):
    """Amortised Gaussian posterior ``q(z | x, s) = N(mean, diag(var))``.

    ``forward`` returns ``(mean, var, z)``, each ``(n, n_out)``, with ``z`` a
    reparametrised sample.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_hidden: int = 128,
        n_layers: int = 1,
        n_categories: Sequence[int] = (),
        n_continuous: int = 0,
        dropout_rate: float = 0.1,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        var_eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.hidden = FCLayers(
            n_in,
            n_hidden,
            n_layers,
            n_categories,
            n_continuous,
            dropout_rate,
            use_batch_norm,
            use_layer_norm,
        )
        self.mean = nn.Linear(n_hidden, n_out)
        self.log_var = nn.Linear(n_hidden, n_out)
        self.var_eps = var_eps

    def forward(
        self, h: Tensor, categorical: Tensor | None = None, continuous: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        hidden = self.hidden(h, categorical, continuous)
        mean = self.mean(hidden)
        var = torch.exp(self.log_var(hidden)) + self.var_eps
        z = mean + var.sqrt() * torch.randn_like(mean)
        return mean, var, z
