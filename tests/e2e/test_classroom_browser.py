"""A class in three browsers: a teacher and two students.

The students open the class link (?class=CODE), choose their names and each start a run from the
Train page; the teacher's class page shows both students on the leaderboard, and a student cannot
cancel the other's run (only their own). Ada's run is SHORT and finishes by itself; Bob's is LONG and
Bob cancels it himself, so nothing waits on how fast the machine trains.
"""

import re
import secrets

import pytest
from playwright.sync_api import expect

from train_page import LONG, SHORT, no_run_left_going, run_cells, run_heading, start  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.timeout(420), pytest.mark.usefixtures("no_run_left_going")]


def join_as(app, code: str, name: str | None) -> None:
    """Open the class link; choose a display name (a student) or none (the teacher)."""
    app.goto(f"class?class={code}")
    expect(app.heading(f"^Class {code}$")).to_be_visible()
    if name is not None:
        app.page.get_by_role("button", name=re.compile("Choose your display name")).click()
        box = app.widget("stTextInput", "Display name").locator("input")
        box.fill(name)
        app.button("Save").click()
        expect(app.page.get_by_text(f"You are {name} in this class.")).to_be_visible()
    app.assert_no_exception()


def leaderboard(app) -> list[str]:
    """The leaderboard's cells, row by row (glide-data-grid's accessible mirror of its canvas)."""
    return run_cells(app.page.locator(".st-key-class_leaderboard")).all_inner_texts()


def class_cancel(app, run_id: str):
    """The Cancel button beside a run in the class's "In progress" list (the visible copy)."""
    return app.page.locator(f".st-key-class-cancel-{run_id} button:visible")


def test_two_students_run_the_teacher_sees_both_and_neither_can_cancel_the_others_run(new_app, app_server):
    code = f"e2e-{secrets.token_hex(3)}"
    teacher, ada, bob = new_app(app_server), new_app(app_server), new_app(app_server)
    join_as(teacher, code, None)
    join_as(ada, code, "Ada")
    join_as(bob, code, "Bob")

    # Each student trains from the Train page; the class (and name) go with the run. Ada opens it afresh
    # (a new session, as after a refresh): the browser remembers her class and name.
    ada.goto("train")
    expect(ada.page.get_by_test_id("stSidebar").get_by_text(f"Class {code} · as Ada")).to_be_visible()
    ada_run = start(ada, SHORT)
    bob.nav("Train")
    bob_run = start(bob, LONG)  # waits behind Ada's, or trains: either way live until Bob cancels it

    # The teacher's page, opened before any run existed, follows by itself: both students listed,
    # Bob's run in progress.
    teacher.wait_for(lambda: {"Ada", "Bob"} <= set(leaderboard(teacher)), "both students on the teacher's leaderboard",
                     120)
    expect(teacher.page.get_by_text(re.compile(r"^Bob · .*(queued|starting|running)")).first).to_be_visible()

    # Ada sees Bob's run in progress but cannot cancel it; Bob can, from the class page.
    ada.nav("Class")
    expect(class_cancel(ada, bob_run)).to_be_disabled()
    bob.nav("Class")
    expect(class_cancel(bob, bob_run)).to_be_enabled()
    class_cancel(bob, bob_run).click()
    expect(bob.page.get_by_text(re.compile(r"^Bob · "))).to_have_count(0, timeout=60_000)  # no longer in progress

    # Ada's run ends by itself: the teacher's leaderboard ranks her first, with her test accuracy.
    def ada_ranked():
        cells = leaderboard(teacher)
        return cells[:3] if cells[:2] == ["1", "Ada"] and re.fullmatch(r"\d+\.\d\d%", cells[2]) else None

    teacher.wait_for(ada_ranked, f"Ada's run {ada_run} ranked on the teacher's leaderboard", 240)
    for app in (teacher, ada, bob):
        app.assert_no_exception()
    teacher.screenshot("class")
