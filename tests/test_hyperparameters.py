"""machinery/hyperparameters.py: the one rule that sizes both networks gives the blog post's 32x32
network and the paper's 64x64 one, against the widths and parameter counts written out by hand in
helpers.py."""
from machinery import hyperparameters
from helpers import D_WIDTHS, G_WIDTHS, discriminator_parameters, generator_parameters


def test_the_rule_gives_the_blog_post_and_the_paper():
    for size in G_WIDTHS:
        assert hyperparameters.generator_filters(size) == G_WIDTHS[size]
        assert hyperparameters.discriminator_filters(size) == D_WIDTHS[size]
    # The hand counts themselves, for the two networks the literature gives (3 channels).
    assert generator_parameters(G_WIDTHS[32], 3) == 4_926_595
    assert discriminator_parameters(D_WIDTHS[32], 3) == 1_033_729
    assert generator_parameters(G_WIDTHS[64], 3) == 18_855_043
    assert discriminator_parameters(D_WIDTHS[64], 3) == 4_315_649
