"""The lesson of a comparison: exact sentences for a hand-made set of runs, and edge cases."""

from fake_runs import BOUNDS, TINY, TINY_ARGS, fake_run, run_cli
from forgetless.experiments.compare import plan, planned_run_id
from forgetless.results.lesson import is_bound, lesson, worst_first
from forgetless.results.store import RunStore
from forgetless.results.summary import group_runs

LEARNED = 0.98


def hand_run(strategy, scenario, seed, forgotten_to, learned=LEARNED, seconds=10.0,
             held=0, added=0, **options):
    """5 tasks: each learned to ``learned`` and kept until the last task, after which the four
    earlier ones sit at ``forgotten_to`` (the last stays at ``learned``). So ACC is
    (4 * forgotten_to + learned) / 5, forgetting is learned - forgotten_to and the learning
    accuracy is ``learned``."""
    run = fake_run(strategy, scenario, seed, strategy_bytes=held, train_seconds=seconds,
                   **options)
    matrix = [[learned if j <= i else 0.0 for j in range(5)] for i in range(4)]
    matrix.append([forgotten_to] * 4 + [learned])
    run.accuracy_matrix = matrix
    run.costs.update(parameters=50_000 + added, parameters_added=added)
    return run


def seeds(strategy, scenario, values, **options):
    """One hand-made run per seed; ``values`` are the seeds' ``forgotten_to``."""
    return [hand_run(strategy, scenario, seed, v, **options) for seed, v in enumerate(values)]


def class_runs(replay=True):
    runs = (seeds("naive", "class", [0.0, 0.0, 0.0])
            + seeds("ewc", "class", [0.03, 0.04, 0.05], family="regularization", seconds=12.0,
                    held=400_000)
            + seeds("lwf", "class", [0.02, 0.03, 0.04], family="regularization", seconds=11.0,
                    held=200_000)
            + seeds("joint", "class", [0.97, 0.97, 0.97], seconds=30.0, stores_raw_data=True))
    if replay:
        runs += (seeds("er", "class", [0.79, 0.80, 0.81], family="replay", seconds=15.0,
                       held=128_000, stores_raw_data=True)
                 + seeds("derpp", "class", [0.785, 0.795, 0.805], family="replay",
                         seconds=20.0, held=160_000, stores_raw_data=True)
                 + seeds("generative-replay", "class", [0.55, 0.56, 0.57], family="replay",
                         seconds=80.0, held=2_000_000))
    return runs


def task_runs():
    return (seeds("naive", "task", [0.9, 0.9, 0.9], learned=0.99)
            + seeds("ewc", "task", [0.95, 0.95, 0.95], learned=0.99, family="regularization",
                    seconds=12.0, held=400_000)
            + seeds("pnn", "task", [0.99, 0.99, 0.99], learned=0.99, family="architecture",
                    seconds=30.0, added=100_000, needs_task_id=True))


def test_the_lesson_of_a_hand_made_comparison_is_these_sentences():
    # The figures, by hand: naive class ACC (4 * 0 + 98) / 5 = 19.6 %, forgetting 98 points;
    # er (4 * 80 + 98) / 5 = 83.6 %, sd 4 * 1 / 5 = 0.8; derpp 83.2 ± 0.8; ewc 22.8 %;
    # generative replay 64.4 %; joint 97.2 %; er closes (83.6 - 19.6) / (97.2 - 19.6) = 82 % of
    # the gap; the model holds 50,000 float32 parameters = 200 kB.
    found = lesson(task_runs() + class_runs())
    assert found.scenario == "class"
    assert found.findings == [
        "Forgetting is worst in the class-incremental scenario: naive fine-tuning learns each "
        "task to 98.0% but ends at 19.6% ACC; it forgets 98.0 points of each earlier task on "
        "average.",
        "Replay fixes most of it: er ends at 83.6% ACC (forgetting 18.0%), closing 82% of the "
        "gap to joint training (97.2%).",
    ]
    assert found.choices == [
        "Without storing raw data: generative-replay, 64.4% ACC, 8.00x naive's train time, "
        "holding 2.0 MB.",
        "With memory no larger than the model (200.0 kB): er, 83.6% ACC, 1.50x naive's train "
        "time, holding 128.0 kB.",
        "With the task id known (task-incremental): pnn, 99.0% ACC, 3.00x naive's train time, "
        "holding 0 B, adding 100,000 parameters.",
    ]
    assert found.caveats == [
        "Regularizers barely beat naive here: 22.8% vs 19.6%.",
        "er, derpp are within the seeds' spread of each other (83.6 ± 0.8% vs 83.2 ± 0.8%): a "
        "difference inside the spread is not a win.",
        "joint (97.2%) is a bound that keeps every task's data: references, never recommended.",
    ]
    text = found.format_text(width=100)
    assert text.startswith("The lesson (class-incremental):\nForgetting is worst")
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Best per constraint:\n  - Without storing raw data" in text


def test_a_bound_is_never_a_choice_even_when_it_is_best_at_everything():
    runs = class_runs(replay=False) + seeds("cumulative", "class", [0.96] * 3, seconds=1.0,
                                            stores_raw_data=False)
    found = lesson(runs)
    assert is_bound("cumulative") and is_bound("hat+cumulative") and not is_bound("ewc+er")
    assert not any("cumulative," in c or "joint," in c for c in found.choices)
    assert found.choices[0] == ("Without storing raw data: ewc, 22.8% ACC, 1.20x naive's train "
                                "time, holding 400.0 kB; barely better than naive (19.6%).")
    assert found.caveats[-1] == ("joint (97.2%) and cumulative (96.4%) are bounds that keep "
                                 "every task's data: references, never recommended.")


def test_without_replay_the_best_family_left_is_named_with_its_caveat():
    found = lesson(class_runs(replay=False))
    assert found.findings[1] == ("Regularization helps most: ewc ends at 22.8% ACC "
                                 "(forgetting 94.0%), closing 4% of the gap to joint training "
                                 "(97.2%).")
    assert "replay" not in " ".join(found.sentences).lower()
    # The only family measured is the one that helps most: no "barely beat" line for it, but
    # ewc and lwf (22.0 ± 0.8) are within each other's spread (22.8 ± 0.8).
    assert found.caveats[0].startswith("ewc, lwf are within the seeds' spread")


def test_one_scenario_only_says_so_and_that_the_task_id_case_was_not_measured():
    found = lesson(class_runs())
    assert found.findings[0].startswith("In the class-incremental scenario, the only one "
                                        "measured: naive fine-tuning learns")
    assert found.choices[-1] == ("With the task id known: no task-incremental runs here "
                                 "(forgetless compare --scenario task measures them).")


def test_one_seed_warns_that_the_spread_is_unknown_and_claims_no_tie():
    runs = [r for r in task_runs() + class_runs() if r.config["seed"] == 0]
    found = lesson(runs)
    assert found.caveats[0] == ("Each strategy ran with one seed, so the spread over seeds is "
                                "unknown and small differences may be noise (add seeds with "
                                "--seeds).")
    assert not any("within the seeds' spread" in c for c in found.caveats)
    assert found.findings[1].startswith("Replay fixes most of it: er ends at 82.8% ACC")


def test_when_everything_ties_nothing_is_called_a_fix():
    runs = (seeds("naive", "class", [0.1, 0.2, 0.3])
            + seeds("ewc", "class", [0.1, 0.2, 0.3], family="regularization", held=400_000)
            + seeds("er", "class", [0.105, 0.205, 0.305], family="replay", held=1000,
                    stores_raw_data=True))  # 0.4 points higher, inside the spread (sd 8)
    found = lesson(runs)
    assert found.findings[1] == ("Nothing measured here beats naive fine-tuning beyond the "
                                 "seeds' spread: the best, er, ends at 36.0% ACC against "
                                 "naive's 35.6%.")
    assert found.choices[0] == ("Without storing raw data: ewc, 35.6% ACC, 1.00x naive's train "
                                "time, holding 400.0 kB; no better than naive (35.6%).")
    assert "Replay methods do no better than naive here: 36.0% vs 35.6%." in found.caveats
    assert "Regularizers do no better than naive here: 35.6% vs 35.6%." in found.caveats


def test_without_naive_the_lesson_says_nothing_can_be_measured_against_it():
    runs = [r for r in class_runs() if r.config["strategy"] != "naive"]
    found = lesson(runs)
    assert found.findings == [
        "In the class-incremental scenario, the only one measured; naive fine-tuning was not "
        "run, so neither how much the network forgets nor what a fix gains can be measured.",
        "The best measured strategy is er (replay), 83.6% ACC."]
    assert found.choices[0] == ("Without storing raw data: generative-replay, 64.4% ACC, train "
                                "time not compared with naive, holding 2.0 MB.")


def test_no_runs_no_lesson_and_groups_read_worst_forgetting_first():
    assert lesson([]).sentences == [] and lesson([]).format_text() == ""
    groups = worst_first(group_runs(task_runs() + class_runs()))
    assert [g.scenario for g in groups] == ["class", "task"]
    assert [g.scenario for g in group_runs(task_runs() + class_runs())] == ["task", "class"]


def test_a_fix_that_reaches_the_bound_is_not_said_to_close_more_than_the_whole_gap():
    runs = class_runs(replay=False) + seeds("er", "class", [0.98] * 3, family="replay",
                                            held=1000, stores_raw_data=True)
    assert lesson(runs).findings[1] == ("Replay fixes most of it: er ends at 98.0% ACC "
                                        "(forgetting 0.0%), as high as joint training "
                                        "(97.2%).")


def test_compare_opens_with_the_lesson_then_the_worst_forgetting_table(tmp_path, capsys,
                                                                       monkeypatch):
    """Stored hand-made runs under the planned ids: compare reuses them and trains nothing."""
    monkeypatch.setenv("COLUMNS", "100")
    forgotten = {("naive", "class"): 0.0, ("naive", "domain"): 0.9, ("joint", "class"): 0.97,
                 ("joint", "domain"): 0.97, ("cumulative", "class"): 0.96,
                 ("cumulative", "domain"): 0.96}
    with RunStore(tmp_path / "runs.db") as store:
        for config in plan(TINY, strategies=BOUNDS, scenarios=["domain", "class"],
                           seeds=[0, 1]):
            run = hand_run(config.strategy, config.scenario, config.seed,
                           forgotten[config.strategy, config.scenario])
            run.run_id, run.config = planned_run_id(config), config.to_dict()
            store.put(run)
    status, out, err = run_cli(capsys, "compare", *TINY_ARGS, "--epochs", "2", "--strategies",
                               ",".join(BOUNDS), "--scenario", "domain,class", "--seeds", "2",
                               "--store", str(tmp_path / "runs.db"), "--no-report", "-q")
    assert status == 0, err
    assert "0 trained now, 12 reused" in out
    assert out.startswith("The lesson (class-incremental):\nForgetting is worst in the "
                          "class-incremental scenario: naive fine-tuning learns each task to "
                          "98.0%")
    lesson_part = out.split("\n\n", 1)[0]
    assert max(len(line) for line in lesson_part.splitlines()) <= 100
    assert "references, never\n    recommended." in lesson_part  # wrapped, indented
    assert out.index("class-incremental — ") < out.index("domain-incremental — ")


def test_with_several_protocols_the_lesson_names_the_one_it_speaks_of():
    other = [hand_run("naive", "class", seed, 0.5, source="digits") for seed in (0, 1, 2)]
    found = lesson(other + class_runs())
    assert found.findings[0].endswith("on average (measured on split mnist, 5 tasks, mlp, 5 "
                                      "epochs/task, batch 128, adam lr 0.001).")
    groups = worst_first(group_runs(other + class_runs()))
    assert [g.rows[0].label for g in groups][-1] == "naive"  # digits forgets less: last
    assert len(groups) == 2 and groups[0].protocol == found.protocol


def lm_run(strategy, matrix, family="baseline"):
    """A language-model run on a knowledge stream: task 0 is the prior skills (0.9 before
    fine-tuning), tasks 1-2 new facts."""
    run = fake_run(strategy, "domain", 0, family=family)
    run.accuracy_matrix = matrix
    run.untrained_accuracy = [0.9, 0.0, 0.0]
    run.objective = "language_modelling"
    return run


def test_a_language_model_lesson_says_what_naive_keeps_of_the_prior_skills_and_who_keeps_more():
    runs = [lm_run("naive", [[0.9, 0.0, 0.0], [0.4, 1.0, 0.0], [0.3, 0.5, 1.0]]),
            # learns far less than naive: not a fair trade, not named
            lm_run("wise-ft", [[0.9, 0.0, 0.0], [0.9, 0.2, 0.0], [0.9, 0.1, 0.2]],
                   family="weight-space"),
            lm_run("lora", [[0.9, 0.0, 0.0], [0.8, 1.0, 0.0], [0.75, 0.9, 0.9]],
                   family="parameter-efficient")]
    findings = lesson(runs).findings
    assert ("Prior skills: the pretrained model answers 90.0% of its probes; naive fine-tuning "
            "keeps 30.0% after the last task (60.0 points lost) while learning 100.0% of the "
            "new facts.") in findings
    assert ("Learning at least 90% of what naive learns, lora keeps the most: 75.0% of the "
            "prior skills, learning 95.0%.") in findings


def test_the_report_draws_a_language_model_comparison_on_the_learning_forgetting_plane():
    from forgetless.report.html import render

    runs = [lm_run("naive", [[0.9, 0.0, 0.0], [0.4, 1.0, 0.0], [0.3, 0.5, 1.0]]),
            lm_run("lora", [[0.9, 0.0, 0.0], [0.8, 1.0, 0.0], [0.75, 0.9, 0.9]],
                   family="parameter-efficient")]
    page = render(runs)
    assert "Learning against forgetting" in page
    assert "lora after new task 2: learnt 90.0%, prior skills 75.0%" in page
    assert "naive after new task 1: learnt 100.0%, prior skills 40.0%" in page
    assert "the pretrained model: 90.0%" in page
    classification = render([hand_run("naive", "class", 0, 0.0)])
    assert "Learning against forgetting" not in classification
