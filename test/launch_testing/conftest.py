# The files here are launch_testing tests and their helpers: test/test_launch.py runs each test_*.py
# with the `launch_test` command against a colcon install. pytest must not import them as ordinary
# test modules (scripts/test.sh also passes --ignore=test/launch_testing).
collect_ignore_glob = ["*.py"]
