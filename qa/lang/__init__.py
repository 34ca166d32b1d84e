"""Language helpers every stage shares: normalisation, quantities, answer types, injected orders.

Nothing here knows about indexes, models or HTTP.
"""
