"""What the commands share: their command-line frame (cli), TensorFlow's set-up (tf_setup),
writing files whole or not at all (files), and the run directory (run_dir)."""
