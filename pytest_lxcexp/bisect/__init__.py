"""`lxcexp bisect`: the first commit whose LXC build is worse, found with build-lxc and side-by-side runs."""
