//! A 2-D map of the images' features at one cut: t-SNE (van der Maaten & Hinton 2008;
//! Barnes-Hut, `bhtsne`) on exact nearest neighbours by cosine, started from a seeded layout
//! (the layout still varies slightly between runs: the forces are summed in parallel; a
//! report cached for the folder keeps its maps). Beside it, how often an image's nearest neighbours
//! share its class: the separation a class can watch grow with depth.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::duplicates::{dot, unit_rows};
use super::types::standardise;
use crate::model::Unit;

/// Images a map shows at most (a balanced, seeded subset beyond).
pub const MAX_MAP_IMAGES: usize = 3000;
/// t-SNE's perplexity (fewer images: what they allow).
const PERPLEXITY: f32 = 30.0;
const EPOCHS: usize = 750;
/// Neighbours the agreement counts.
const AGREEMENT_NEIGHBOURS: usize = 10;
/// Fewer images than this make no map.
const MIN_MAP_IMAGES: usize = 5;

/// The map at one cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutMap {
    pub unit: Unit,
    /// Indices into the report's images, one per point.
    pub images: Vec<usize>,
    pub points: Vec<[f32; 2]>,
    /// Share of each image's 10 nearest neighbours (cosine, at this cut) in its own class.
    pub neighbour_agreement: f64,
}

/// The images a map shows: all, or a balanced seeded subset of [`MAX_MAP_IMAGES`].
pub(super) fn map_images(labels: &[usize], classes: usize, seed: u64) -> Vec<usize> {
    if labels.len() <= MAX_MAP_IMAGES {
        return (0..labels.len()).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut per_class: Vec<Vec<usize>> = (0..classes)
        .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
        .collect();
    per_class.iter_mut().for_each(|m| m.shuffle(&mut rng));
    let mut chosen = Vec::with_capacity(MAX_MAP_IMAGES);
    for round in 0.. {
        let before = chosen.len();
        for members in &per_class {
            if let Some(&i) = members.get(round)
                && chosen.len() < MAX_MAP_IMAGES
            {
                chosen.push(i);
            }
        }
        if chosen.len() == before || chosen.len() == MAX_MAP_IMAGES {
            break;
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Each row's `k` nearest other rows (unit rows: by cosine), nearest first, with distances
/// `sqrt(2 - 2 cos)` (the Euclidean distance of unit vectors).
fn nearest(rows: &[f32], dim: usize, k: usize) -> Vec<Vec<bhtsne::Neighbor<f32>>> {
    let n = rows.len() / dim.max(1);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let a = &rows[i * dim..(i + 1) * dim];
            let mut all: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (dot(a, &rows[j * dim..(j + 1) * dim]), j))
                .collect();
            let k = k.min(all.len());
            if k < all.len() {
                all.select_nth_unstable_by(k, |x, y| y.0.total_cmp(&x.0));
                all.truncate(k);
            }
            all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            all.into_iter()
                .map(|(cos, j)| bhtsne::Neighbor {
                    index: j,
                    distance: (2.0 - 2.0 * cos).max(0.0).sqrt(),
                })
                .collect()
        })
        .collect()
}

/// The map of `chosen` images at one cut (`features` holds every image's row, `dim` wide).
/// `None` for fewer than 5 images.
pub(super) fn cut_map(
    unit: Unit,
    features: &[f32],
    dim: usize,
    labels: &[usize],
    chosen: &[usize],
    seed: u64,
) -> Option<CutMap> {
    let n = chosen.len();
    if n < MIN_MAP_IMAGES || dim == 0 {
        return None;
    }
    // Channels differ in scale (and early cuts have few of them): standardised, then cosine.
    let picked = crate::train::cut::gather(features, dim, chosen);
    let rows = unit_rows(&standardise(picked, Vec::new(), dim).train, dim);
    // bhtsne needs n - 1 >= 3 * perplexity; its neighbour rows are 3 * perplexity long.
    let perplexity = PERPLEXITY.min((n - 1) as f32 / 3.0);
    let k = ((3.0 * perplexity) as usize).clamp(1, n - 1);
    let neighbours = nearest(&rows, dim, k.max(AGREEMENT_NEIGHBOURS.min(n - 1)));
    let agree: usize = (neighbours.iter().enumerate())
        .map(|(i, row)| {
            (row.iter().take(AGREEMENT_NEIGHBOURS))
                .filter(|nb| labels[chosen[nb.index]] == labels[chosen[i]])
                .count()
        })
        .sum();
    let counted: usize = neighbours
        .iter()
        .map(|r| r.len().min(AGREEMENT_NEIGHBOURS))
        .sum();
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = neighbours
        .into_iter()
        .map(|mut r| {
            r.truncate(k);
            r
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1e-4).ok()?;
    let start: Vec<f32> = (0..2 * n).map(|_| normal.sample(&mut rng)).collect();
    let slices: Vec<&[f32]> = rows.chunks_exact(dim).collect();
    let mut tsne: bhtsne::tSNE<'_, f32, &[f32], 2> = bhtsne::tSNE::new(&slices);
    tsne.perplexity(perplexity)
        .epochs(EPOCHS)
        .initial_embedding(start)
        .barnes_hut_with_neighbors(0.5, &neighbours);
    let points = tsne
        .embedding()
        .chunks_exact(2)
        .map(|p| [p[0], p[1]])
        .collect();
    Some(CutMap {
        unit,
        images: chosen.to_vec(),
        points,
        neighbour_agreement: agree as f64 / counted.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_classes_stay_apart_on_the_map_and_their_neighbours_agree() {
        let (classes, dim) = (3, 12);
        let (features, labels) = crate::doctor::types::separable_features(classes, 30, dim, 5.0, 1);
        let chosen = map_images(&labels, classes, 0);
        let map = cut_map(Unit::Head, &features, dim, &labels, &chosen, 0).expect("a map");
        assert_eq!(map.points.len(), 90);
        assert!(
            map.neighbour_agreement > 0.95,
            "{}",
            map.neighbour_agreement
        );
        // Each class's centre is farther from the other classes' centres than its points are
        // from it, on average.
        let centre = |c: usize| {
            let pts: Vec<_> = (0..90)
                .filter(|&i| labels[i] == c)
                .map(|i| map.points[i])
                .collect();
            let n = pts.len() as f32;
            [
                pts.iter().map(|p| p[0]).sum::<f32>() / n,
                pts.iter().map(|p| p[1]).sum::<f32>() / n,
            ]
        };
        let dist =
            |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
        let spread: f32 = (0..90)
            .map(|i| dist(map.points[i], centre(labels[i])))
            .sum::<f32>()
            / 90.0;
        assert!(dist(centre(0), centre(1)) > 2.0 * spread);
        assert!(dist(centre(1), centre(2)) > 2.0 * spread);
        // The neighbours are exact: the same agreement again (the layout itself varies a
        // little between runs: bhtsne sums forces in parallel).
        let again = cut_map(Unit::Head, &features, dim, &labels, &chosen, 0).expect("a map");
        assert_eq!(again.neighbour_agreement, map.neighbour_agreement);
    }

    #[test]
    fn a_large_set_is_mapped_through_a_balanced_subset() {
        let labels: Vec<usize> = (0..4000).map(|i| usize::from(i % 10 == 0)).collect();
        let chosen = map_images(&labels, 2, 0);
        assert_eq!(chosen.len(), MAX_MAP_IMAGES);
        assert_eq!(chosen.iter().filter(|&&i| labels[i] == 1).count(), 400);
    }
}
