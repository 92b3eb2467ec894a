"""The numbers that define the DCGAN: the paper's (Radford et al. 2015) and the blog post's.

Every hyperparameter of the paper and of the blog post this project follows is a named value here;
nothing else in the project repeats one. Plain Python, no TensorFlow: the entry points read their
flags' defaults from here and parse the flags before they import TensorFlow (seconds), so --help
and a mistyped flag answer at once. dcgan.py builds the graph from these.
"""

Z_DIM = 100              # z ~ U(-1, 1)^100 (images are data.IMAGE_SIZE square)
BATCH_SIZE = 128
LEARNING_RATE = 0.0002   # Adam, both networks
BETA1 = 0.5              # Adam momentum; 0.9 made training oscillate in the paper
ALPHA = 0.2              # leaky ReLU slope in the discriminator
SMOOTH = 0.1             # one-sided label smoothing: real labels are 1 - SMOOTH, fake labels 0
INIT_STDDEV = 0.02       # all weights ~ N(0, 0.02)
KERNEL_SIZE = 5          # every convolution is 5x5 ...
STRIDE = 2               # ... stride 2, 'SAME' padding
BN_EPSILON = 1e-5        # the fused kernel raises it to 1.001e-5 (cuDNN's floor)
BN_MOMENTUM = 0.9        # moving statistics: m <- 0.9 m + 0.1 batch
G_STEPS = 2              # generator updates per discriminator update (the blog post's notebook)
G_BASE_SHAPE = (4, 4, 512)
G_FILTERS = (256, 128)   # then output_dim channels
D_FILTERS = (64, 128, 256)


# Compute precisions the graph can be built in (weights, statistics and losses stay float32).
PRECISIONS = ("float32", "bfloat16")
