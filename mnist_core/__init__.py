"""mnist_core: everything in MNIST Lab that is not UI. The modules, top (what pages call) to bottom:

read models (what pages show, computed once)
    live         a run's progress line, chart maths, which run to watch, how a run ended
    form         the Train form's fields in the reader's words, and its problems
    sweeps       a sweep's runs from a spec (grid, random, seeds, caps), its estimate and analysis
    classes      a class's code, names, leaderboard and CSV (the teacher's view)
    csvfile      CSV downloads: numbers without float noise, no formula a spreadsheet would run
    evaluate     test-set predictions, confusion matrix, model cards, runs compared
    inspection   feature maps, kernels, first-layer templates
    explain      attribution maps, embedding maps
    heavy        heavy page work (t-SNE, attribution, a model over the test set) in bounded child
                 processes: a few at once, one per visitor, killed when the visitor leaves
    snapshots    kernels and a probe's feature maps through a run, for the replay
    loaded       LoadedModel: a model a page picked, with its metadata, name and cache key
models in
    onnx_import/ an ONNX file from anywhere, checked as hostile (checks), its input convention found
                 (conventions), loaded and tried in a limited child (sandbox), run as a torch module
                 behind the lab's input (adapter): load_onnx(data, name) -> LoadedModel
runs, workers, executors
    registry/    the run registry (SQLAlchemy: SQLite, or PostgreSQL when shared), by layer: runs
                 (the Run record, reads, the worker's writes), queue (waiting, starting, the claim),
                 artifacts (a run's small files), liveness (pid here, heartbeat lease elsewhere),
                 db (connections, transactions, faults in one line), schema (tables, upgrades)
    artifacts    a run's checkpoint and replay kept in the registry, for hosts that share no disk
    worker       executes a queued run wherever it trains, and only that
    outcomes     how a run ended, kept in a file while the registry cannot take it, recorded later
    executors    what pages and the CLI submit and cancel through: for_host() is local runners, or
                 Ray Jobs (MNIST_RAY_ADDRESS); the web server's background reconcile
    executor_base the Executor interface (submit, cancel, prepare, reconcile, places in line) and
                 the steps every executor shares (admission, the run's record, the cancel flag)
    runner       a local executor's slot: claims runs, trains each in a worker forked from warm
    warm         what a worker needs before its first step, preloaded into the runner's forkserver
    ray_executor each run as a Ray Job; cancel's backstop; the node a run ran on
    runfiles     run ids and every file a run owns (log, snapshots, default checkpoint)
    records      what crosses processes: RunStatus, MetricRow
    class_codes  a class code's one rule, for classes and the drawings alike
    limits       a hosted server's bounds (queue, time, the demo's bounds on a config, sweeps)
    retention    which finished runs a host removes (MNIST_KEEP_RUNS, MNIST_KEEP_RUN_DAYS), oldest first
training
    training/    config and presets; admission; one loop; the torch and NumPy engines; cpu: threads
                 from the cores other processes leave free
    scratch/     the tutorials' from-scratch NumPy layers, each backward checked against autograd
models and data
    models       the zoo (a registry of named architectures, plain PyTorch)
    checkpoints  safetensors + JSON sidecar, checked on load (no pickle)
    predict      probabilities;  preprocess: canvas or upload -> 28x28;  export: ONNX, bundle
    data         MNIST fetched, verified and loaded
    drawings/    the visitors' drawing set: each field checked, kept in the registry (the giver as a
                 hash), caps, the held-out part by giver, export/import in MNIST's IDX format, statistics
kernels/         LeNet-5's fused CPU kernels in C, applied only by the training engine, in workers
paths, errors    where files live (and the one atomic write); the one-line error types

The CLI lives in __main__.py: `python -m mnist_core --help`.
"""

__version__ = "0.1.0"
