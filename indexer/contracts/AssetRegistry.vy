# pragma version ~=0.4.3
"""
@title Empressa AssetRegistry
@notice Registers an Empressa asset record on chain by the entry hash of its
        current signed `asset.put` (SHA-256 of the canonical entry bytes).
        The first account to register a hash is its on-chain owner. The
        reconciler treats a registration as verified only when the signed
        record itself names that owner (`payout.evm`), so registering another
        creator's hash claims nothing.
@dev    Compiled from this source by the `vyper` package from PyPI
        (indexer/chains/contract.py); no bytecode is committed.
"""

event AssetRegistered:
    asset_id: indexed(uint256)
    record_hash: bytes32
    owner: address

# The last asset id assigned; ids start at 1, so 0 means "not registered".
last_id: public(uint256)
# record hash -> asset id
asset_of: public(HashMap[bytes32, uint256])
# asset id -> owner (the account that registered it)
owner_of: public(HashMap[uint256, address])
# asset id -> record hash
record_of: public(HashMap[uint256, bytes32])


@external
def register(record_hash: bytes32) -> uint256:
    """
    @notice Register `record_hash`; the sender becomes the owner.
    @return The new asset id.
    """
    assert record_hash != empty(bytes32), "empty record hash"
    assert self.asset_of[record_hash] == 0, "already registered"
    asset_id: uint256 = self.last_id + 1
    self.last_id = asset_id
    self.asset_of[record_hash] = asset_id
    self.owner_of[asset_id] = msg.sender
    self.record_of[asset_id] = record_hash
    log AssetRegistered(asset_id=asset_id, record_hash=record_hash, owner=msg.sender)
    return asset_id
