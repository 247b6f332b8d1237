"""Checks that the behaviour tests catch a broken method: each entry edits one line of a
strategy to switch its key ingredient off (a mutant), runs the tests meant to catch it, and
restores the file. Every mutant must make its tests fail.

Run from the repository root: ``python tests/check_mutants.py`` (about a minute; not collected
by pytest, since it edits the sources while it runs). ``python tests/check_mutants.py derpp
gdumb`` checks only the mutants whose label contains one of the words. Run nothing else on the
tree meanwhile: a commit made while a mutant is in place would record it.
"""

import pathlib
import subprocess
import sys

S = "src/forgetless/strategies/"
MUTANTS = [  # (what is switched off, file, line(s), replacement, tests that must fail)
    ('ewc zero Fisher', S + 'regularization/ewc.py',
     '        self.fishers.append(fisher)',
     '        self.fishers.append({n: 0 * v for n, v in fisher.items()})',
     'tests/test_mutations.py::test_importance_is_what_holds_the_weights[ewc-settings0]'),
    ('online-ewc zero Fisher', S + 'regularization/ewc.py',
     '        self.fishers, self.anchors = [fisher], [anchor]',
     '        self.fishers, self.anchors = [{n: 0 * v for n, v in fisher.items()}], [anchor]',
     'tests/test_mutations.py::test_importance_is_what_holds_the_weights[online-ewc-settings1]'),
    ('si zero importance', S + 'regularization/si.py',
     '        gained = {n: self.path[n] /',
     '        gained = {n: 0 * self.path[n] /',
     'tests/test_mutations.py::test_importance_is_what_holds_the_weights[si-settings2]'),
    ('mas zero importance', S + 'regularization/mas.py',
     '        gained = self.without_released(gained)',
     '        gained = {n: 0 * v for n, v in gained.items()}',
     'tests/test_mutations.py::test_importance_is_what_holds_the_weights[mas-settings3]'),
    ('l2 zero importance', S + 'regularization/l2.py',
     '{n: torch.ones_like(w)',
     '{n: torch.zeros_like(w)',
     'tests/test_mutations.py::test_importance_is_what_holds_the_weights[l2-settings4]'),
    ('lwf no distillation', S + 'regularization/lwf.py',
     '        if self.teacher is None:\n            return None',
     '        if True:\n            return None',
     'tests/test_mutations.py::test_lwf_distillation_keeps_the_old_answers'),
    ('er no replay', S + 'replay/er.py',
     '        return batch if replayed is None else batch.concat(replayed)',
     '        return batch',
     'tests/test_mutations.py::test_er_trains_on_old_samples_in_every_step'),
    ('derpp zero stored logits', S + 'replay/derpp.py',
     ' ' * 55 + 'batch.task_ids[:fresh]), logits[:fresh])',
     ' ' * 55 + 'batch.task_ids[:fresh]), 0 * logits[:fresh])',
     'tests/test_mutations.py -k derpp'),
    ('derpp one draw', S + 'replay/derpp.py',
     '                memory = self.buffer.sample(n, generator)\n                replay_logits',
     '                replay_logits',
     'tests/test_mutations.py::test_derpp_draws_two_independent_memory_batches'),
    ('icarl no NME', S + 'replay/icarl.py',
     '        if self.class_means is None:\n            return None',
     '        if True:\n            return None',
     'tests/test_mutations.py::test_icarl_classifies_by_the_nearest_mean_of_exemplars'),
    ('icarl no distillation', S + 'replay/icarl.py',
     '        if self.old_model is None or self.distillation == 0:',
     '        if True:',
     'tests/test_mutations.py::test_icarl_distillation_keeps_the_old_units_outputs'),
    ('icarl random exemplars', S + 'replay/icarl.py',
     '            index = herding(self.features(model, x_c), m)',
     '            index = torch.randperm(len(x_c))[:m]',
     'tests/test_mutations.py::test_icarl_exemplars_are_herded_and_the_mutant_random_ones_are_not'),
    ('icarl wrong exemplar count', S + 'replay/icarl.py',
     '        m = self.buffer.capacity // len(known)',
     '        m = self.buffer.capacity // len(known) - 1',
     'tests/test_mutations.py::test_icarl_keeps_buffer_size_over_classes_exemplars_per_class'),
    ('agem no gradient projection', S + 'replay/agem.py',
     '            torch.nn.utils.vector_to_parameters(projected, [p.grad for p in params])',
     '            pass  # the projection is computed and counted but not applied',
     'tests/test_replay.py -k agem_step_gradient'),
    ('agem no update projection', S + 'replay/agem.py',
     '        projected = -project(-update, reference)',
     '        projected = update',
     'tests/test_mutations.py::test_agem_projects_the_optimisers_update'),
    ('hat no compensation', S + 'architecture/hat.py',
     '            embedding.grad.mul_(',
     '            (0 * embedding.grad).mul_(',
     'tests/test_mutations.py::test_hat_compensates_the_embedding_gradient_for_the_annealing'),
    ('packnet random pruning', S + 'architecture/packnet.py',
     'torch.where(mine, weight.abs(),',
     'torch.where(mine, torch.rand_like(weight),',
     'tests/test_mutations.py::test_packnet_prunes_the_smallest_magnitudes_of_the_task'),
    ('pnn no laterals', S + 'architecture/pnn.py',
     '                    z = z + self.adapters[k][i - 1](hidden[:k])',
     '                    z = z',
     'tests/test_mutations.py::test_pnn_laterals_carry_the_earlier_columns_features'),
    ('generative replay no distillation', S + 'replay/generative_replay.py',
     '        if self._replay is None:\n            return None',
     '        if True:\n            return None',
     'tests/test_mutations.py::test_generative_replay_distillation_keeps_the_old_tasks'),
    ('soft target loss without T^2', S + 'replay/common.py',
     '    return -(target * log_student).sum(1).mean() * t * t',
     '    return -(target * log_student).sum(1).mean()',
     'tests/test_mutations.py::test_soft_target_loss_by_hand'),
    ('gem no projection', S + 'replay/gem.py',
     '            torch.nn.utils.vector_to_parameters(projected, [p.grad for p in params])',
     '            pass  # the projection is computed and counted but not applied',
     'tests/test_replay_baselines.py -k gem_step'),
    ('gdumb no re-initialisation', S + 'replay/gdumb.py',
     '                    module.reset_parameters()',
     '                    pass',
     'tests/test_replay_baselines.py -k gdumb_memory'),
    ('er-ace symmetric', S + 'replay/er_ace.py',
     '        return (present_classes_loss(logits[rows], y) - learners) / len(batch)',
     '        return 0 * learners',
     'tests/test_replay_baselines.py -k er_ace'),
    ('mir random candidates', S + 'replay/mir.py',
     '        chosen = scores.topk(min(k, len(pool))).indices',
     '        chosen = torch.randperm(len(pool), generator=learner.generator)[:k]',
     'tests/test_mir.py -k retrieval'),
    ('mir loss alone, not its increase', S + 'replay/mir.py',
     '    return after - before', '    return after', 'tests/test_mir.py -k retrieval'),
    ('mir real step', S + 'replay/mir.py',
     '    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)',
     '    network.learner.optimizer.zero_grad()\n    loss.backward()\n'
     '    network.learner.optimizer.step()\n'
     '    grads = [p.grad for p in params.values()]',
     'tests/test_mir.py -k leaves_the_parameters'),
    ('si clips each contribution', S + 'regularization/si.py',
     '        gained = {n: self.path[n] / ((end[n] - self.task_start[n]).square() + self.xi)\n'
     '                  for n in end}',
     '        gained = {n: (self.path[n] / ((end[n] - self.task_start[n]).square() + self.xi))'
     '.clamp_min(0)\n                  for n in end}',
     'tests/test_regularization.py -k si_clips'),
    ('task-free never consolidates', S + 'regularization/quadratic.py',
     '        if self.steps_since_consolidation < self.consolidate_every:\n'
     '            return False',
     '        if True:\n            return False',
     'tests/test_task_free.py -k consolidates_every'),
    ('task-free si zero importance', S + 'regularization/si.py',
     '        gained = {n: self.path[n] /',
     '        gained = {n: 0 * self.path[n] /',
     'tests/test_task_free.py -k importance_is_not_zero'),
    ('task-free si keeps nothing of task 0', S + 'regularization/si.py',
     '        gained = {n: self.path[n] /',
     '        gained = {n: 0 * self.path[n] /',
     'tests/test_task_free.py -k keeps_more'),
    ('task-free si continues a closed period', S + 'regularization/si.py',
     '        if not self.period_open:',
     '        if self.path is None:',
     'tests/test_task_free.py -k fresh_period'),
    ('task-free online-ewc zero running Fisher', S + 'regularization/ewc.py',
     '                                value=1.0 if first else self.fisher_alpha)',
     '                                value=0.0)',
     'tests/test_task_free.py -k importance_is_not_zero'),
    ('task-free online-ewc keeps nothing of task 0', S + 'regularization/ewc.py',
     '                                value=1.0 if first else self.fisher_alpha)',
     '                                value=0.0)',
     'tests/test_task_free.py -k keeps_more'),
    ('lora base weights left trainable', S + 'peft/adapters.py',
     '        p.requires_grad_(False)\n    for p in lora_',
     '        p.requires_grad_(True)\n    for p in lora_',
     'tests/test_peft.py -k lora_training_changes_only'),
    ('lora-tasks ignores the task id', S + 'peft/lora_tasks.py',
     '        choice = task_ids.clamp(max=len(self.adapters) - 1)',
     '        choice = torch.full_like(task_ids, len(self.adapters) - 1)',
     'tests/test_peft.py -k lora_tasks_keeps_earlier'),
    ('lora-tasks head rows not frozen', S + 'peft/lora_tasks.py',
     '        if self._gate is not None:\n            self._gate.restore()',
     '        pass',
     'tests/test_peft.py -k lora_tasks_keeps_earlier_tasks_bit_identical[mlp]'),
    ('olora no orthogonality', S + 'peft/olora.py',
     '    return torch.stack([(a @ b.T).abs().sum()',
     '    return 0 * torch.stack([(a @ b.T).abs().sum()',
     'tests/test_peft.py -k olora_p'),
    ('olora applies only the newest adapter', S + 'peft/olora.py',
     '        return list(self.adapters)',
     '        return self.adapters[-1:]',
     'tests/test_peft.py -k olora_applies'),
    ('lm exact match on any token', "src/forgetless/objectives/language_modelling.py",
     '    return ((logits.argmax(-1) == y) | ~target).all(1) & target.any(1)',
     '    return ((logits.argmax(-1) == y) | ~target).any(1) & target.any(1)',
     'tests/test_objectives.py -k greedy'),
    ('lm der matches padding', "src/forgetless/objectives/language_modelling.py",
     '        real = ids >= 0',
     '        real = ids >= -1',
     'tests/test_objectives.py -k top_k'),
    ('lm loss on every token', "src/forgetless/objectives/language_modelling.py",
     '        return token_cross_entropy(logits, y)\n',
     '        return token_cross_entropy(logits, y.clamp_min(0))\n',
     'tests/test_objectives.py -k answer_tokens_only'),
    # one run on 2 ranks (each about 40 s: the module's runs spawn one process group)
    ('distributed replay means not shared', S + 'replay/common.py',
     '        return mean * (rows * self.run_rows / (self.batch_rows * drawn))',
     '        return mean', 'tests/test_distributed_replay.py'),
    ('distributed er-ace local present classes', S + 'replay/er_ace.py',
     '    present = distributed.all_reduce_sum_([present])[0] > 0',
     '    present = present > 0', 'tests/test_distributed_replay.py'),
    ('distributed mir local top-k', S + 'replay/buffer.py',
     '        return distributed.all_reduce_sum_([spread])[0]',
     "        return spread.masked_fill(~mine.to(values.device), -float('inf'))",
     'tests/test_distributed_replay.py'),
    ('distributed first visit per rank', 'src/forgetless/learner.py',
     '            self._visited[index] = True', '            self._visited[share] = True',
     'tests/test_distributed_replay.py'),
]


def main(words: list[str]) -> int:
    survivors = []
    for label, path, old, new, test in MUTANTS:
        if words and not any(w in label for w in words):
            continue
        source = pathlib.Path(path)
        text = source.read_text()
        if text.count(old) != 1:
            print(f"{label}: the line to mutate is not in {path} once; update this entry.")
            survivors.append(label)
            continue
        source.write_text(text.replace(old, new))
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                     "no:cacheprovider", *test.split()],
                                    capture_output=True, text=True)
        finally:
            source.write_text(text)
        failure = next((line for line in result.stdout.splitlines()
                        if line.startswith("E ")), "")
        # caught: a test failed (pytest exit 1) on an assertion, not on a crash of the mutant
        caught = result.returncode == 1 and failure.lstrip("E ").startswith(
            ("assert", "AssertionError"))
        print(f"{label:36s} {'caught' if caught else 'SURVIVED'}  {failure[:90]}", flush=True)
        if not caught:
            survivors.append(label)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
