"""The cloud mask: cloud score, snow, haze, shadow, buffers, and how the mask reads a scene."""
