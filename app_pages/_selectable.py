"""Plotly charts a visitor selects in with the mouse or a finger: `selectable_chart`, which the Dataset
grid, the confusion matrix, the Explain map and the sweep's accuracy charts are drawn with.

plotly.js selects a clicked point from the hover it last drew (its click-to-select reads the chart's
hover data; only after that does its click handler hover again, to report the click). A mouse always
hovers on its way to a click; a finger hovers nothing before it taps, so a tap alone would draw the
hover label and select nothing. The script below, put on the page once, hovers where a finger first
touches a chart's plot area, as the mouse would have: the tap that follows selects exactly what a
click there selects. A drag (pan, box, lasso) drops that hover as it starts, as it does with a mouse.
"""

from __future__ import annotations

import streamlit as st

# The plot area of a cartesian Plotly chart is one rectangle, class "nsewdrag": it takes the pointer
# events, hovers on mousemove and selects on click. The listener runs in the capture phase, before
# plotly.js's own touchstart handler marks the chart as being dragged (it does not hover then).
# The style hides the element holding the script, which would otherwise add a gap above the chart.
TAP_HOVERS_FIRST = """<style>
.stElementContainer:has(> .stHtml > script[data-tap-hovers-first]) { display: none; }
</style>
<script data-tap-hovers-first>
if (!window.mnistLabTapHovers) {
  window.mnistLabTapHovers = true;
  document.addEventListener("touchstart", (event) => {
    const area = event.touches.length === 1 && event.target.closest
      && event.target.closest(".js-plotly-plot .nsewdrag");
    if (!area) return;
    const finger = event.touches[0];
    area.dispatchEvent(new MouseEvent("mousemove", {clientX: finger.clientX, clientY: finger.clientY}));
  }, {capture: true, passive: true});
}
</script>"""


def selectable_chart(fig, *, key: str, on_select="rerun", selection_mode="points", **kwargs):
    """st.plotly_chart(fig, key=key, on_select=on_select, selection_mode=selection_mode, **kwargs), on a
    page where a tap on a touch screen selects as a click does. Returns what st.plotly_chart returns."""
    st.html(TAP_HOVERS_FIRST, unsafe_allow_javascript=True)  # our own constant: nothing from a visitor
    return st.plotly_chart(fig, key=key, on_select=on_select, selection_mode=selection_mode, **kwargs)
