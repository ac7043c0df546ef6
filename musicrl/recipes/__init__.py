"""Training recipes: one file per method, no inheritance, one shape (torchtune, cleanrl, nanoGPT):

    Config                      typed dataclass; defaults <- YAML <- key=value (``musicrl.config``)
    setup(cfg) -> State         process group, models, optimiser, data, resume (``musicrl.train_state``)
    next_batch(state) -> Batch  the step's global batch, drawn alike on every rank; this rank's share
    step(state, batch) -> dict  one update: pure orchestration of rollouts, rewards and losses; metrics
    main(cfg)                   the loop: logging, checkpoints, time limits, rank 0 writes

Training recipes: codec, phase-head, lm, embedder, quality, judges, cfg-distill, caption-distill, reward-model, rl,
bond, clp; each runs unchanged under ``torchrun --nproc-per-node N`` (``musicrl.distributed``). Shared pieces live
in one place each: rollouts (``musicrl.rollouts``), rewards (``musicrl.rewards``), losses (``musicrl.losses``), what
the policy recipes share — prompts, validation, the best checkpoint (``musicrl.policy_training``), clip data
(``musicrl.clip_features``), schedules/resume/time limits (``musicrl.train_state``). No recipe imports another.
Three data-preparation steps are recipes too but have no loop (``Config`` -> ``main``): lm-data (tokenise the
corpus), codec-spectra (compact spectra for a GPU machine), assemble-default.
"""
