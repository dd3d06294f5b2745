from pk.core.testing import check, parametrize_contracts


@parametrize_contracts("pk-pignn")
def test_contract(case):
    check(case)
