"""pdr's Hydra configs. Shipped inside the package as `pdr.conf` (pyproject.toml maps this folder
there at build time), found by Hydra as pkg://pdr.conf; see pdr/config/search_path.py."""
