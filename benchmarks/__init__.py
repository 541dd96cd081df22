"""What bench.py measures with: timed windows that take turns (timing), the train step and its
ceiling as window functions (train_step), the same step in PyTorch (torch_reference), and the
CelebA input path (input_pipeline). The last two are also commands (python -m benchmarks.NAME),
as is resume, which measures what resuming costs."""
