"""mnist_core: everything in MNIST Lab that is not UI. The modules, top (what pages call) to bottom:

read models (what pages show, computed once)
    live         a run's progress line, chart maths, which run to watch, how a run ended
    form         the Train form's fields in the reader's words, and its problems
    evaluate     test-set predictions, confusion matrix, model cards, runs compared
    inspect      feature maps, kernels, first-layer templates
    explain      attribution maps, embedding maps
    snapshots    kernels and a probe's feature maps through a run, for the replay
runs and workers
    runs         the run registry (SQLite): runs, their status and metric rows, liveness
    worker       executes a queued run (the CLI and the dashboard both), launches workers
    runfiles     run ids and every file a run owns (log, snapshots, default checkpoint)
    records      what crosses processes: RunStatus, MetricRow
    limits       a hosted server's bounds (queue, time, the demo's bounds on a config)
training
    training/    config and presets; admission; one loop; the torch and NumPy engines
    scratch/     the tutorials' from-scratch NumPy layers, each backward checked against autograd
models and data
    models       the zoo (a registry of named architectures, plain PyTorch)
    checkpoints  safetensors + JSON sidecar, checked on load (no pickle)
    predict      probabilities;  preprocess: canvas or upload -> 28x28;  export: ONNX, bundle
    data         MNIST fetched, verified and loaded
kernels/         LeNet-5's fused CPU kernels in C, applied only by the training engine, in workers
paths, errors    where files live (and the one atomic write); the one-line error types

The CLI lives in __main__.py: `python -m mnist_core --help`.
"""

__version__ = "0.1.0"
