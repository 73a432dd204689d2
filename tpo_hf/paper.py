"""The TPO paper (arXiv 2501.13919): cited by `TPOTrainer` (TRL's `_paper`) and by the model and dataset cards."""

# "TPO" also names TRL's `trl.experimental.tpo` (Triple Preference Optimization, an unrelated method): every card and
# trainer carries this tag, and tpo-hf's classes say "Temporal" wherever the short name appears.
TPO_TAG = "temporal-preference-optimization"
TPO_PAPER_TITLE = "Temporal Preference Optimization for Long-Form Video Understanding"
TPO_PAPER_ID = "2501.13919"
TPO_CITATION = """\
@article{li2025temporal,
    title        = {{Temporal Preference Optimization for Long-Form Video Understanding}},
    author       = {Li, Rui and Wang, Xiaohan and Zhang, Yuhui and Wang, Zeyu and Yeung-Levy, Serena},
    year         = 2025,
    journal      = {arXiv preprint arXiv:2501.13919}
}"""
