"""Every figure of a run, one module per experiment on one style kit (:mod:`.style`); the
package re-exports their functions, so ``from dabench import figures`` reaches all of them."""

from __future__ import annotations

from dabench.figures.style import (  # noqa: F401
    ONE_COLUMN, TWO_COLUMN, blank, colour, family_legend, image_grid, save, shade, show_image,
    style
)
from dabench.figures.lds import (  # noqa: F401
    AXIS_LABELS, plot_ablations, plot_checkpoint_selection, plot_cost, plot_lds, plot_retraining,
    write_ablation_figure, write_checkpoint_figure, write_lds_figure, write_retraining_figure
)
from dabench.figures.retrac import (  # noqa: F401
    plot_retrac_correlation, plot_retrac_manipulation, plot_retrac_norms, plot_retrac_outliers,
    plot_retrac_single_example, plot_retrac_source_tracing, plot_retrac_targeted,
    write_retrac_figures
)
from dabench.figures.counterfactual import (  # noqa: F401
    plot_counterfactual_box, plot_counterfactual_grid, plot_journey_box, plot_journey_grid
)
from dabench.figures.shapley import (  # noqa: F401
    WAY_COLOURS, plot_shapley_budget, plot_shapley_counterfactual, plot_shapley_samples
)
from dabench.figures.examples import (  # noqa: F401
    plot_proponents, plot_self_influence
)
