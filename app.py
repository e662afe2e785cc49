"""MNIST Lab: the Streamlit entry point.

Page config (the theme comes from .streamlit/config.toml), st.navigation over the pages in app_pages/,
and the frame drawn around every page (app_pages._frame: the sidebar with the data status and the runs
in progress, the visitor's owner cookie; app_pages._class: the class this browser is in).
Pages are thin: they call mnist_core and draw.
"""

import streamlit as st

from app_pages._widget_states import guard

guard()  # widget states no browser sends (a forged request) are dropped before Streamlit keeps them
st.set_page_config(page_title="MNIST Lab", page_icon="✍️", layout="wide")

# The default page is served at "/", so its own url_path would be no address at all: "/home" (a link,
# a bookmark, a guess) goes to a hidden page that sends the visitor to Home.
HOME = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True, url_path="index")


def _home_alias() -> None:
    st.switch_page(HOME)


PAGES = [
    HOME,
    st.Page("app_pages/dataset.py", title="Dataset", icon=":material/grid_view:", url_path="dataset"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/inside.py", title="Inside the network", icon=":material/visibility:", url_path="inside"),
    st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:", url_path="evaluate"),
    st.Page("app_pages/explain.py", title="Explain", icon=":material/scatter_plot:", url_path="explain"),
    st.Page("app_pages/classroom.py", title="Class", icon=":material/groups:", url_path="class"),
    st.Page(_home_alias, title="Home", url_path="home", visibility="hidden"),
]

page = st.navigation(PAGES)

from app_pages import _class, _frame  # noqa: E402  (after set_page_config)
from mnist_core import executors  # noqa: E402


@st.cache_resource(show_spinner=False)
def _executor_ready() -> bool:
    """Once per server, not per page: the executor catches up with what ended meanwhile and gets ready (a
    local runner warms up, so the first Start trains within a second), then reconciles in the background
    (a Ray job that died before its run started reads as failed without anyone asking)."""
    try:
        executors.for_host().prepare()
        executors.keep_reconciling()
    except Exception:  # noqa: BLE001 - the first submit starts one anyway; a page never fails for this
        return False
    return True


_executor_ready()

_frame.sidebar()  # data status, runs in progress, and a first visit's owner cookie
_class.sidebar()  # joins a class from a ?class=CODE link on any page, and shows the class this browser is in
page.run()
