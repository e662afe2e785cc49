"""Home: what the lab is, whether data and default models are present, runs in progress (live while
any is), the way in to every page, and a field to join a teacher's class by its code."""

import streamlit as st

from mnist_core import classes, data, live, registry
from mnist_core.checkpoints import find_checkpoints, read_meta
from mnist_core.errors import MnistLabError
from mnist_core.records import LIVE
from app_pages import _class
from app_pages._errors import show_error

st.title("MNIST Lab")
st.caption("Browse MNIST, train small networks with live charts, look inside them, and draw digits for predictions.")

st.markdown(
    "MNIST is 70,000 handwritten digits, 28x28 pixels each: 60,000 to train on and 10,000 to test. "
    "This lab reproduces five classic tutorials on it (from a NumPy two-layer net to LeNet-5) and lets you "
    "see every step: the data, the training curves, the kernels and feature maps, and the model's answer "
    "to your own handwriting.")

st.subheader("Status")
c_data, c_models, c_runs = st.columns(3)

with c_data:
    if data.is_present():
        st.success("MNIST is downloaded (60,000 train + 10,000 test images).", icon=":material/check_circle:")
    else:
        st.warning("MNIST is not downloaded yet.", icon=":material/cloud_off:")
        if st.button("Fetch MNIST", type="primary", icon=":material/download:"):
            bar = st.progress(0.0, text="Starting...")
            try:
                data.fetch(progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message))
            except MnistLabError as exc:
                show_error(exc)
            else:
                st.rerun()

with c_models:
    checkpoints, how_many = find_checkpoints(limit=8)  # the defaults, then the newest
    if checkpoints:
        lines = []
        for p in checkpoints:
            try:
                acc = read_meta(p).get("metrics", {}).get("test_accuracy")
            except MnistLabError:
                continue
            lines.append(f"- **{p.stem}**" + (f": {acc:.2%} test accuracy" if acc else ""))
        if how_many > len(lines):
            lines.append(f"- and {how_many - len(lines):,} more (Evaluate's model cards and every model picker "
                         "list them)")
        st.success(f"{how_many:,} checkpoint(s) ready.", icon=":material/check_circle:")
        st.markdown("\n".join(lines))
    else:
        st.warning("No checkpoints yet: train one, or run `make pretrained`.", icon=":material/warning:")

RUNS_POLL_SECONDS = 2.0


def runs_in_progress(polling: bool) -> None:
    """How many runs are live and each one's progress: a fragment redrawing itself every couple of
    seconds while any run is live, and the page once when the last one ends."""

    @st.fragment(run_every=RUNS_POLL_SECONDS if polling else None)
    def panel() -> None:
        try:
            in_progress = registry.list_runs(status=LIVE)  # all a place in line needs; the rest is counted
            so_far = 0 if in_progress else registry.count_runs()
        except MnistLabError as exc:
            show_error(exc)
            return
        if in_progress:
            st.info(f"{len(in_progress)} run(s) in progress.", icon=":material/model_training:")
            for r in in_progress:
                p = live.short_progress(r, in_progress)
                st.progress(p.fraction, text=p.text)
        else:
            st.info(f"No run in progress ({so_far:,} run(s) so far).", icon=":material/model_training:")
        if polling and not in_progress:
            st.rerun()

    panel()


with c_runs:
    try:
        any_live = bool(registry.list_runs(status=LIVE, limit=1))
    except MnistLabError as exc:
        show_error(exc)
        any_live = False
    runs_in_progress(any_live)

st.subheader("Where to go")
links = [
    ("app_pages/dataset.py", "Dataset", ":material/grid_view:",
     "The digits as a grid: filter, shuffle, zoom into pixels."),
    ("app_pages/train.py", "Train", ":material/model_training:", "Configure a run and watch loss and accuracy live."),
    ("app_pages/inside.py", "Inside the network", ":material/visibility:", "Kernels and feature maps, layer by layer."),
    ("app_pages/draw.py", "Draw", ":material/draw:", "Draw a digit and get the model's probabilities."),
    ("app_pages/evaluate.py", "Evaluate", ":material/analytics:",
     "Accuracy per digit, the confusion matrix and its images, model cards, runs compared."),
    ("app_pages/explain.py", "Explain", ":material/scatter_plot:",
     "Why the model answered: attribution maps and the embedding map of the test set."),
    ("app_pages/classroom.py", "Class", ":material/groups:",
     "A teacher's class: its leaderboard, its students' curves and every run, by a class code."),
]
for row in range(0, len(links), 3):  # rows of three: on a phone they stack in this order
    for col, (page, label, icon, text) in zip(st.columns(3), links[row:row + 3]):
        with col.container(border=True):
            st.page_link(page, label=label, icon=icon)
            st.caption(text)

st.subheader("A class")
class_code, class_name = _class.membership()
if class_code:
    st.markdown(f"You are in class **{class_code}**"
                + (f" as **{_class.as_markdown(class_name)}**." if class_name else ", without a display name yet."))
    if st.button("Open the class", icon=":material/groups:"):
        st.switch_page("app_pages/classroom.py")
else:
    st.caption("A teacher's class code (like period-3) puts your runs on that class's leaderboard, under a name you "
               "choose. No account or email.")
    code_col, join_col = st.columns([3, 1], vertical_alignment="bottom")
    typed = code_col.text_input("Class code", key="home_class_code", max_chars=classes.CODE_MAX, placeholder="period-3")
    if join_col.button("Join the class", icon=":material/login:", key="home_join"):
        try:
            _class.join(typed)
        except MnistLabError as exc:
            show_error(exc)
        else:
            st.switch_page("app_pages/classroom.py")
