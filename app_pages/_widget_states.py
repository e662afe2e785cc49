"""Widget states a browser sends are checked before Streamlit keeps them: forged ones are dropped.

Every rerun request carries the values of the page's widgets (BackMsg rerun_script, WidgetStates),
and Streamlit 1.67 stores each under the id it names, as whatever field it was sent in. A client
that speaks the websocket protocol (harness/ws_visitor.py) can send what no browser does:

- an id that is not one of Streamlit's element ids ("$$ID-..."), such as a widget's key: Streamlit
  reads it as a session-state key with no widget behind it, and every keyed widget drawn after that
  raises KeyError (SessionState.filtered_state), on every page, for as long as the session lives;
- a value in another field than the one its widget reads (a string for a number input, a number
  for a selectbox): the widget's deserializer raises TypeError or ValueError.

Streamlit's frontend sends neither, so guard() drops them as a request arrives: the widget keeps its
value, as if nothing had been sent. A widget is judged by what it was in this session's previous
run (its metadata); one the session has not drawn yet cannot be judged and is left to Streamlit.
The values themselves (a preset's name, a run id, a number out of range) are the pages' to check.
"""

from __future__ import annotations

from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.runtime.state.common import is_element_id
from streamlit.runtime.state.session_state import SessionState

# The fields the frontend sends besides the one a widget registers: number inputs register
# double_value and send int_value when they hold integers; components send JSON, bytes or Arrow.
ALSO_SENT = {"double_value": {"int_value"}, "json_value": {"bytes_value", "arrow_value"}}

_keep = SessionState.set_widgets_from_proto


def _sent_by_a_browser(session: SessionState, state) -> bool:
    if not is_element_id(state.id):
        return False
    sent = state.WhichOneof("value")
    metadata = session._new_widget_state.widget_metadata.get(state.id)
    if sent is None or metadata is None:
        return True  # an empty value (a cleared input), or a widget not drawn yet
    return sent == metadata.value_type or sent in ALSO_SENT.get(metadata.value_type, ())


def _set_widgets_from_proto(self: SessionState, widget_states: WidgetStates) -> None:
    kept = [s for s in widget_states.widgets if _sent_by_a_browser(self, s)]
    if len(kept) < len(widget_states.widgets):
        widget_states = WidgetStates(widgets=kept)
    _keep(self, widget_states)


def guard() -> None:
    """Check every later rerun request's widget states (once per server; calling it again is free)."""
    SessionState.set_widgets_from_proto = _set_widgets_from_proto
