"""Quality metrics: the FID Inception (inception), the Fréchet distance (frechet), PRD (prd), and
the reference features of a data set and the score of generated ones (features). Training
evaluates with them during a run; `analysis` spreads the same functions over Ray workers."""
