"""Building blocks of the embedded brain simulator (``mrrecon.data.simulate``).

template: the MNI ICBM152 2009a templates shipped inside the nilearn wheel, loaded once and sampled.
fields:   seeded smooth random fields (deformations, shell thickness, bias, phase, texture).
anatomy:  one subject's anatomy: geometry, tissue-fraction maps with scalp/skull/fat, texture and vessels.
contrast: tissue relaxation tables, sequence parameters, signal equations and the randomised training
          contrast ("random": random tissue parameters and sequence, or random per-tissue intensities).
"""
