from pk.core.testing import check, parametrize_contracts


@parametrize_contracts("pk-core")
def test_builtin_contract(case):
    check(case)
