"""Measuring a generator: FID and KID (distances), precision and recall (precision_recall), the
networks whose features they compare (features), and the digit classifier that gives MNIST its
feature network (classifier)."""
