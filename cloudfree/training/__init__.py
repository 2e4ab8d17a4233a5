"""Training and evaluation on the SEN12MS-CR layout."""
