"""The Train page's live panel: the run being watched, redrawn while it trains.

`watch(recent, token)` draws it under the form: which run (live.watch_choices / pick_watched: the
one just started, else this browser's newest, else a run in progress), then two fragments: one
redraws the heading, Cancel or Delete (its owner only), the progress and the run's health about
once a second; the other the loss and accuracy charts every two seconds, each redraw costing the
browser CPU that a worker on a small machine feels (benchmarks/app_training, BENCHMARKS.md). Both
read only the metric rows after the last ones this session holds (live.RunRows); mnist_core.live
does the maths. When the run starts or ends, the whole page is drawn once more (the runs table's
status, polling on or off). Under them, the replay of the run's kernels and feature maps.
"""

from __future__ import annotations

import streamlit as st

from mnist_core import executors, form, live, registry
from mnist_core.errors import MnistLabError
from mnist_core.records import LIVE
from app_pages import _run_charts
from app_pages._errors import show_error
from app_pages._explain_ui import replay_section
from app_pages._figures import CHART_CONFIG
from app_pages._keys import SCROLL_TO_RUN, WATCH_RUN

POLL_SECONDS = 1.0   # the heading, Cancel and progress while a run trains
CHART_SECONDS = 2.0  # the charts
NOT_YOURS = "Only the browser that started this run can cancel or delete it."
OPERATORS = "This run was started from the command line: only the server's operator can change it."

# After Start, bring the run's heading to the top of the screen, with its progress and Cancel under it (the
# form above is tall on a phone). Not to the very top: Streamlit's header bar covers it, and on a phone the
# "Started run" toast too. The page is still being drawn: the heading comes a moment later (a fragment draws
# it), what is above it can change height and the toast comes and goes, so the heading is put back at the top
# whenever the page's height changes or a toast appears, until the visitor scrolls, touches, clicks or presses
# a key (two minutes at most).
SCROLL_SCRIPT = """<script>
(() => {
  const page = document.querySelector('[data-testid="stMainBlockContainer"]');
  const covered = () => {  // the bottom of what is fixed over the top of the screen
    let bottom = 0;
    for (const el of document.querySelectorAll('[data-testid="stHeader"], [data-testid="stToast"]')) {
      const box = el.getBoundingClientRect();
      if (box.height > 0 && box.top < window.innerHeight / 3) bottom = Math.max(bottom, box.bottom);
    }
    return bottom;
  };
  const align = () => {
    const head = document.querySelector(".st-key-live_run_head");
    if (!head) return;
    head.style.scrollMarginTop = `${covered() + 8}px`;
    head.scrollIntoView({block: "start"});
  };
  const resized = new ResizeObserver(align);
  let queued = false;  // one align a frame, however many nodes a render adds
  const added = new MutationObserver(() => {
    if (queued || !document.querySelector('[data-testid="stToast"]')) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; align(); });
  });
  const visitor = new AbortController();
  const done = () => { resized.disconnect(); added.disconnect(); visitor.abort(); };
  for (const kind of ["wheel", "touchstart", "pointerdown", "keydown"])
    window.addEventListener(kind, done, {capture: true, signal: visitor.signal});
  if (page) resized.observe(page);
  added.observe(document.body, {childList: true, subtree: true});
  setTimeout(done, 120000);
  align();
})();
</script>"""


def watch(recent: list[registry.Run], token: str) -> None:
    """The panel: a "Watching" box when there is a choice, the watched run's two fragments and its
    replay; a hint to press Start when there is no run to watch."""
    choices = live.watch_choices(recent, token, keep=st.session_state.get(WATCH_RUN))
    current = live.pick_watched(choices, st.session_state.get(WATCH_RUN), token)
    with st.container(key="live_panel"):
        if st.session_state.pop(SCROLL_TO_RUN, False):
            st.html(SCROLL_SCRIPT, unsafe_allow_javascript=True)
        if current is None:
            st.info("No runs yet. Press **Start training** to launch one.", icon=":material/info:")
            return
        if len(choices) > 1:
            st.session_state["watch_pick"] = current.id
            st.selectbox("Watching", [r.id for r in choices], key="watch_pick", on_change=_pick,
                         format_func=lambda run_id: _watch_label(next(r for r in choices if r.id == run_id), token),
                         help="Every run in progress, and the runs this browser started.")
        polling = current.is_live  # a finished run is drawn once
        st.fragment(_status, run_every=POLL_SECONDS if polling else None)(current.id, current.status, token)
        st.fragment(_charts, run_every=CHART_SECONDS if polling else None)(current.id)
        with st.expander("How the network learned: replay its kernels and feature maps", icon=":material/replay:"):
            st.caption("Recorded about 30 times a run and at every validation. Press Play, or move the slider "
                       "(during a run it picks up the newest frames).")
            replay_section(current.id, key="train_replay")


def _watch_label(r: registry.Run, token: str) -> str:
    return f"{r.id} · {r.config.get('model')} · {r.state}" + (" · yours" if r.owner == token else "")


def _pick() -> None:
    st.session_state[WATCH_RUN] = st.session_state["watch_pick"]


# --- the fragments -------------------------------------------------------------------------------

def _status(run_id: str, was_status: str, token: str) -> None:
    try:
        in_progress = registry.list_runs(status=LIVE)  # all a place in line needs
        run = next((r for r in in_progress if r.id == run_id), None) or registry.get_run(run_id)
        _draw_status(run, in_progress, token)
    except MnistLabError as exc:
        show_error(exc)
        return
    if run.status != was_status:  # it started or ended: draw the whole page once more
        st.rerun()


def _charts(run_id: str) -> None:
    try:
        run = registry.get_run(run_id)
        rows = _rows(run_id)
    except MnistLabError as exc:
        show_error(exc)
        return
    if rows:
        loss, acc = _run_charts.live_curves(rows, run.total_steps)
        left, right = st.columns(2)
        left.plotly_chart(loss, key="live_loss", config=CHART_CONFIG)
        right.plotly_chart(acc, key="live_acc", config=CHART_CONFIG)


def _rows(run_id: str) -> list[dict]:
    """The run's metric rows, topped up with only the rows after the last this session holds."""
    held = st.session_state.get("live_rows")
    if not isinstance(held, live.RunRows) or held.run_id != run_id:
        held = st.session_state["live_rows"] = live.RunRows(run_id)
    return held.top_up(registry.get_metrics)


def _draw_status(run: registry.Run, in_progress: list[registry.Run], token: str) -> None:
    """The heading with Cancel (a live run) or Delete (a finished one), the config, then the progress
    and health of a live run or how a finished one ended."""
    with st.container(key="live_run_head"):  # (SCROLL_SCRIPT brings it to the top of the screen)
        head = st.columns([3, 1])
    head[0].subheader(f"Run {run.id} · {run.config.get('model')} · {run.state}")
    mine = live.can_change(run, token)
    why_not = None if mine else (OPERATORS if run.owner is None else NOT_YOURS)
    if run.is_live:
        if head[1].button("Cancel", icon=":material/stop:", key=f"cancel-{run.id}", disabled=not mine, help=why_not):
            try:
                executors.for_host().cancel(run.id, by=token)
            except MnistLabError as exc:
                show_error(exc)
            else:
                st.toast("Cancelling...")
    else:
        with head[1].popover("Delete run", icon=":material/delete:", disabled=not mine, help=why_not):
            st.markdown(f"Delete run **{run.id}** and its curves? This cannot be undone.")
            if st.button("Yes, delete it", type="primary", key=f"delete-{run.id}"):
                try:
                    registry.delete_run(run.id, by=token)
                except MnistLabError as exc:
                    show_error(exc)
                else:
                    st.session_state.pop(WATCH_RUN, None)
                    st.rerun()
    st.caption("Config: " + form.config_line(run.config))
    rows = _rows(run.id)
    if run.is_live:
        last = next((r for r in reversed(rows) if r["split"] == "train"), None)
        p = live.progress(run, last, in_progress)
        st.progress(p.fraction, text=p.text)
        problem = live.health(run, rows[-50:])
        if problem:
            st.warning(problem, icon=":material/warning:")
        return
    kind, text = live.outcome(run, rows)
    icon = {"success": ":material/check_circle:", "warning": ":material/warning:", "error": ":material/error:"}[kind]
    getattr(st, kind)(text, icon=icon)
