"""What every command shares and nothing of the GAN: its command-line frame (cli), TensorFlow's
set-up (tf_setup), and writing files whole or not at all (files)."""
