from pk.core.testing import check, parametrize_contracts


@parametrize_contracts("pk-smartfl")
def test_contract(case):
    check(case)
