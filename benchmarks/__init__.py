"""What bench.py measures with: timed windows that take turns (timing), the train step and its
ceiling as window functions (train_step), the same step in PyTorch (torch_reference), and the
CelebA input path (input_pipeline, also a command of its own)."""
