"""TriMap video diffusion (LangScene-X): key-frame interpolation of RGB, normal and semantic maps."""
