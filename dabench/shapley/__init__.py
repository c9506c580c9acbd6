"""Group attribution of global properties with Shapley values (docs/computation.md §7, the
sparsified-FT paper).

Groups D_1 … D_n partition the training set (the dataset's classes by default). A global property
F(θ) maps a model to a number computed from its generated samples (:mod:`dabench.properties`).
Shapley values by **KernelSHAP**: subsets S_l drawn from the Shapley kernel, then

    min_β Σ_l (F(θ_∅) + 1_{S_l}ᵀβ − F(θ_{S_l}))²   s.t.   1ᵀβ = F(θ_D) − F(θ_∅),

solved in closed form from the KKT system (:func:`kernel_shap`). θ_{S_l} comes three ways
(:data:`WAYS`): retrained from scratch, fine-tuned from θ_D, or fine-tuned from a magnitude-pruned
θ_D that was first fine-tuned on all of D to recover (**sparsified FT**). Every submodel records
its compute, so the ways are compared at equal budget (paper Figure 2).

Evaluation: the **group LDS** — Spearman correlation, over held-out subsets of groups retrained
from scratch, between F(θ_S) and Σ_{i∈S} τ_i (paper Eq. 10) — for the Shapley values and for
per-example attribution scores aggregated to groups (:func:`aggregate`, mean or max), and a
counterfactual: remove the top groups, retrain with several seeds, relative change in F.
"""

from __future__ import annotations

from dabench.shapley.game import (  # noqa: F401
    AGGREGATIONS, WAYS, WAY_LABELS, aggregate, draw_group_subsets, draw_kernel_subsets,
    group_index, kernel_shap, kernel_size_probabilities, members, shapley_values, top_groups
)
from dabench.shapley.pruning import (  # noqa: F401
    apply_masks, count_parameters, magnitude_masks
)
from dabench.shapley.submodels import (  # noqa: F401
    Evaluator, chunk_rows, counterfactual_parts, load_attributions, load_chunks, load_start,
    merge_counterfactual, n_chunks, n_submodels, per_job, recipes, run_counterfactual, run_models,
    write_baseline, write_design, write_pruned, write_reference, write_training_score,
    write_way_values
)
from dabench.shapley.results import (  # noqa: F401
    counterfactual_frame, lds_frame, runtime_and_budget, values_frame
)
