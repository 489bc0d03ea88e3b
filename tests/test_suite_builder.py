"""The Benchmarks page's suite builder (ui/suite_builder.py) through AppTest: a labelled dataset and its test split
by default, n and the smallest detectable difference before the run, split(s) and columns into the YAML."""
import pytest

from llm_lab import data
from llm_lab.access import LOCAL
from llm_lab.bench import runner, suite as suites
from llm_lab.stats import power
from tests.conftest import app_test, no_exceptions

REVIEWS = "demo-reviews"


def _builder():
    at = app_test("views/benchmarks.py").run()
    at.radio(key="b_source").set_value("Build one").run()
    no_exceptions(at)
    return at


def _texts(elements) -> list[str]:
    from ui.common import strip_invisible

    return [strip_invisible(e.value).replace("\\", "") for e in elements]


def _built_suite(at):
    code = at.code[0].value  # the page shows the suite it will run
    return suites.parse(code, "test", "the built suite")


def test_defaults_to_a_labelled_dataset_and_its_test_split_and_says_n_and_the_mde():
    at = _builder()
    assert at.selectbox(key="b_type").value == "classification"
    assert at.selectbox(key="b_dataset").value == REVIEWS != "demo-docs"
    info = data.get(LOCAL, REVIEWS)
    splits = at.multiselect(key=f"b_splits:{REVIEWS}")
    assert splits.value == ["test"]
    assert set(splits.options) >= {f"{s} ({n} rows)" for s, n in info.splits.items()}
    assert at.selectbox(key=f"b_col:{REVIEWS}:text").value == "text"
    assert at.selectbox(key=f"b_col:{REVIEWS}:label").value == "label"
    n = info.splits["test"]  # fewer than the default limit of 200
    mde_points = power.points(power.planning_mde(n))
    expected = (f"{n} test rows: a difference smaller than about {mde_points} points between two models may go "
                "undetected (assuming 20% of examples differ between them)")
    assert any(expected in t for t in _texts(at.info)), _texts(at.info)
    assert n < power.SMALL_N and any("intervals will be wide" in t for t in _texts(at.warning))


def test_building_tasks_with_chosen_splits_and_columns_gives_yaml_that_parses():
    at = _builder()
    at.multiselect(key=f"b_splits:{REVIEWS}").set_value(["test", "validation"])
    at.number_input(key="b_limit").set_value(10).run()
    no_exceptions(at)
    assert sum("10 test rows" in t for t in _texts(at.info)) == 1
    assert sum("10 validation rows" in t for t in _texts(at.info)) == 1
    at.button(key="b_add").click().run()
    no_exceptions(at)
    suite = _built_suite(at)
    assert [(t.dataset, t.split, t.limit, t.columns) for t in suite.tasks] == [
        (REVIEWS, "test", 10, {"text": "text", "label": "label"}),
        (REVIEWS, "validation", 10, {"text": "text", "label": "label"})]
    table = at.dataframe[0].value
    assert list(table["examples"]) == ["10", "10"]
    assert list(table["smallest detectable difference"]) == [f"≈ {power.points(power.planning_mde(10))} points"] * 2
    for spec in suite.tasks:  # the n the builder said is what the runner scores
        assert len(runner.task_frame(LOCAL, spec)[1]) == 10

    # another task type and a column mapped to another role: language modelling on the prompts' questions
    at.selectbox(key="b_type").set_value("language_modeling").run()
    assert at.selectbox(key="b_dataset").value == REVIEWS  # it has a text column: the picked dataset stays
    at.selectbox(key="b_dataset").set_value("demo-prompts").run()
    assert at.selectbox(key="b_col:demo-prompts:text").value is None  # no column named text: the person chooses
    assert at.button(key="b_add").disabled and any("no column named text" in t for t in _texts(at.warning))
    at.selectbox(key="b_col:demo-prompts:text").set_value("prompt")
    at.multiselect(key="b_splits:demo-prompts").set_value(["all rows"])
    at.number_input(key="b_limit").set_value(0).run()
    no_exceptions(at)
    prompts = data.get(LOCAL, "demo-prompts")
    assert any(f"{prompts.rows} rows (all splits) will be scored" in t for t in _texts(at.info))
    assert any("fine-tuned on" in t for t in _texts(at.caption))  # all rows include the train split
    at.button(key="b_add").click().run()
    no_exceptions(at)
    lm = _built_suite(at).tasks[2]
    assert (lm.type, lm.dataset, lm.split, lm.columns, lm.limit) == ("language_modeling", "demo-prompts", "all",
                                                                     {"text": "prompt"}, None)
    _, frame, split, _ = runner.task_frame(LOCAL, lm)
    assert split == "all" and len(frame) == prompts.rows and frame["text"].iloc[0] in set(
        data.load_frame(LOCAL, "demo-prompts")["prompt"])


def test_the_dataset_follows_the_task_type_to_one_that_fits():
    at = _builder()
    at.selectbox(key="b_type").set_value("generation").run()
    assert at.selectbox(key="b_dataset").value == "demo-prompts"
    at.selectbox(key="b_type").set_value("classification").run()
    assert at.selectbox(key="b_dataset").value == REVIEWS
    labels = at.selectbox(key="b_dataset").options
    assert "demo-docs (no label column)" in labels


def test_a_dataset_without_a_test_split_defaults_to_all_rows_and_warns_when_small():
    rows = "text,label\n" + "".join(f"row {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                                    for i in range(12))
    data.import_dataset(LOCAL, "tiny-train", "t.csv", rows.encode(), {"text": "text", "label": "label"},
                        data.Recipe(train=1.0, validation=0.0))
    at = _builder()
    assert at.selectbox(key="b_dataset").value == "tiny-train"  # the workspace's own labelled dataset first
    assert at.multiselect(key="b_splits:tiny-train").value == ["all rows"]
    assert any("has no test split" in t for t in _texts(at.caption))
    assert any("Only 12 examples" in t and "intervals will be wide" in t
               for t in _texts(at.warning)), _texts(at.warning)


@pytest.mark.parametrize("n, expected", [(150, "10"), (1000, "4")])
def test_planning_numbers_match_the_brief_formula(n, expected):
    assert power.points(power.planning_mde(n)) == expected


def test_a_bad_suite_name_is_explained_and_the_tasks_can_still_be_cleared():
    at = _builder()
    assert "directional" not in at.selectbox(key="b_type").options  # needs templates: written in YAML
    at.button(key="b_add").click().run()
    at.text_input(key="b_name").set_value("my suite!").run()
    assert any("needs a name of letters, digits" in t for t in _texts(at.error)), _texts(at.error)
    at.button(key="b_clear").click().run()
    no_exceptions(at)
    assert at.session_state["b_built"] == [] and not at.error
