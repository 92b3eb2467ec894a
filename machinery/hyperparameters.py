"""The numbers that define the DCGAN: the paper's (Radford et al. 2015) and the blog post's.

Every hyperparameter of the paper and of the blog post this project follows is a named value here;
nothing else in the project repeats one. Plain Python, no TensorFlow: the entry points read their
flags' defaults from here and parse the flags before they import TensorFlow (seconds), so --help
and a mistyped flag answer at once. dcgan.py builds the graph from these.
"""

Z_DIM = 100              # z ~ U(-1, 1)^100
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

# --- A conditional DCGAN (train.py --conditional; not in the paper, opt-in) -----------------------
# G takes z joined with the class as one-hot: measured against a learned 16-value embedding
# ~ N(0, 1), which collapsed each class to one image within 156 steps on mnist-sample (the mean
# within-class pixel sd 3.6 against 26.2 one-hot; docs/conditional.md). D is a projection
# discriminator (Miyato & Koyama 2018): its logit gains <V[y], phi(x)>, phi its flattened last
# features, V drawn ~ N(0, INIT_STDDEV) like every other weight of D (at 32x32 phi has 4,096
# values: N(0, 1) would start the logits in the tens).

# --- The networks at every image size, from one rule -------------------------------------------
# The generator starts from BASE_SIDE x BASE_SIDE and doubles the side log2(N / BASE_SIDE) times
# (transposed convolutions); its last hidden layer has G_LAST_FILTERS filters, doubling towards z.
# The discriminator halves the side back to BASE_SIDE (convolutions), its first layer
# D_FIRST_FILTERS filters (no batch norm), doubling, then a dense logit. N=32 gives the blog
# post's G 512-256-128 and D 64-128-256; N=64 the paper's Figure 1, G 1024-512-256-128 and D
# 64-128-256-512.
IMAGE_SIZE = 32          # the blog post's (and the datasets' own) size
BASE_SIDE = 4
G_LAST_FILTERS = 128
D_FIRST_FILTERS = 64
# The cap: the paper's widest layer. Uncapped, N=128 would put 2,048 filters at 4x4, a first
# transposed convolution of 52 M weights (4x4x2048 -> 8x8x1024: 2.8x all of N=64's generator)
# for a 4x4 picture, where the paper stopped at 1,024.
MAX_FILTERS = 1024
MIN_IMAGE_SIZE = 16      # below: G would have no hidden transposed convolution, D no batch norm
MAX_IMAGE_SIZE = 128     # above: see image_size_problem


def image_size_problem(size):
    """Why the networks cannot be built at `size` x `size`, or None if they can."""
    if isinstance(size, bool) or not isinstance(size, int):
        return f"the image size must be an integer, got {size!r}"
    if size < MIN_IMAGE_SIZE:
        return (f"the image size must be at least {MIN_IMAGE_SIZE}: at {size} the generator "
                f"would have no hidden transposed convolution and the discriminator no "
                f"batch-normalized layer, which is not the DCGAN architecture")
    if size & (size - 1):
        return (f"the image size must be a power of two ({MIN_IMAGE_SIZE}, 32, 64, ...), got "
                f"{size}: every layer doubles or halves the side, from and to {BASE_SIDE}x"
                f"{BASE_SIDE}")
    if size > MAX_IMAGE_SIZE:
        return (f"the image size must be at most {MAX_IMAGE_SIZE}, got {size}: the largest "
                f"size measured and tested; each doubling costs 5-6x the compute per image "
                f"(docs/model.md)")
    return None


def check_image_size(size):
    """Raises ValueError(image_size_problem(size)) if the networks cannot be built at `size`."""
    problem = image_size_problem(size)
    if problem:
        raise ValueError(problem)


def layer_count(size):
    """Transposed convolutions of the generator, and convolutions of the discriminator."""
    check_image_size(size)
    return (size // BASE_SIDE).bit_length() - 1


def generator_filters(size):
    """Filters of the generator's layers from the BASE_SIDE grid to its last hidden layer (the
    image's channels come after): N=32 gives (512, 256, 128), N=64 (1024, 512, 256, 128)."""
    count = layer_count(size)
    return tuple(min(MAX_FILTERS, G_LAST_FILTERS << (count - 1 - index))
                 for index in range(count))


def largest_layer_values(size):
    """Values one image has in the networks' largest activation (N=32: G's 16x16x128, 32,768)."""
    g_layers = [(BASE_SIDE << index) ** 2 * filters
                for index, filters in enumerate(generator_filters(size))]
    d_layers = [(size >> (index + 1)) ** 2 * filters
                for index, filters in enumerate(discriminator_filters(size))]
    return max(g_layers + d_layers)


def discriminator_filters(size):
    """Filters of the discriminator's convolutions, image side first: N=32 gives
    (64, 128, 256), N=64 (64, 128, 256, 512)."""
    return tuple(min(MAX_FILTERS, D_FIRST_FILTERS << index) for index in range(layer_count(size)))


# Compute precisions the graph can be built in (weights, statistics and losses stay float32).
PRECISIONS = ("float32", "bfloat16")

# --- Augmentation (train.py --augment; not in the paper, opt-in) --------------------------------
# DiffAugment's three policies (Zhao et al. 2020), always applied in this order, each to each
# image with a probability p that is fixed or, "adaptive", steered as ADA steers it (Karras et
# al. 2020) towards a mean sign of D's logits on the real images of AUGMENT_TARGET (ADA's 0.6).
AUGMENT_POLICIES = ("color", "translation", "cutout")
AUGMENT_ADAPTIVE = "adaptive"
AUGMENT_TARGET = 0.6
# Every ADA_INTERVAL steps (ADA's 4) an adaptive p moves by batch x ADA_INTERVAL /
# ADA_IMAGES_TO_FULL. ADA lets p cross [0, 1] in 500,000 images; runs here are hundreds to tens of
# thousands of steps of 64-128 images (a 1,500-step run at batch 64 sees 96,000), so p may cross
# it in 100,000: about 800 steps at 128, 1,600 at 64.
ADA_INTERVAL = 4
ADA_IMAGES_TO_FULL = 100_000


def augment_policies(text):
    """The policies of a comma-separated string, in the order they are applied.

    Raises:
      ValueError: an unknown or repeated name, or none.
    """
    names = [name.strip() for name in text.split(",")]
    if any(name not in AUGMENT_POLICIES for name in names) or len(set(names)) != len(names):
        raise ValueError(f"{text!r}: give a comma list of distinct policies among "
                         f"{', '.join(AUGMENT_POLICIES)}")
    return tuple(name for name in AUGMENT_POLICIES if name in names)
