# interest-merge (kind "ranked-lists") merges per-interest ranked lists, not model states:
# the suite skips its state-dict properties; test_serving.py checks them on ranked lists.
from pk.core.testing import check, parametrize_contracts


@parametrize_contracts("pk-remi")
def test_contract(case):
    check(case)
