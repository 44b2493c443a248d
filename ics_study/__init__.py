"""ics-study: a reference reproduction of Santurkar et al. (2018) on CIFAR-10 VGGs."""

__version__ = "0.1.0"
