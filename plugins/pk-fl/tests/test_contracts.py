from pk.core.testing import check, parametrize_contracts

EXPECTED_FAILURES = {
    "aggregator:fltrust::aggregator_fixed_point": (
        "FLTrust rescales every client update to the norm of the server's root-data update, so identical "
        "clients do not give that client back (the paper's rule, not a defect)"
    ),
}


@parametrize_contracts("pk-fl", expected_failures=EXPECTED_FAILURES)
def test_contract(case):
    check(case)
