"""Removed once the Train page's rework lands: import from _data, _models, _errors, _figures, _frame."""

from app_pages._data import load_model, load_split, require_data  # noqa: F401
from app_pages._errors import show_error  # noqa: F401
from app_pages._figures import digit_heatmap, probability_bars, tiles_heatmap  # noqa: F401
from app_pages._frame import run_heavy, visitor_token  # noqa: F401
from app_pages._models import checkpoint_picker, checkpoint_search, model_chooser, offered_checkpoints  # noqa: F401
